"""Every method's happy path, against a real daemon over its socket."""

from __future__ import annotations

import pytest

from tests.wire import TIMESTAMP, Wire
from vtd import __version__

pytestmark = pytest.mark.anyio


async def test_probe_reports_version(client: Wire) -> None:
    assert await client.call("probe") == {"ok": True, "version": __version__}


async def test_ping_with_and_without_message(client: Wire) -> None:
    assert await client.call("ping") == {"message": "Pong!"}
    assert await client.call("ping", message="hello") == {"message": "Pong! hello"}


async def test_register_is_idempotent_and_listed(client: Wire) -> None:
    expected = {"success": True, "message": "Extension b-ext registered successfully"}
    assert await client.call("register", extensionId="b-ext") == expected
    assert await client.call("register", extensionId="b-ext") == expected
    await client.call("register", extensionId="a_ext")
    assert await client.call("extensions.list") == [
        {"extensionId": "a_ext"},
        {"extensionId": "b-ext"},
    ]


async def test_deregister_is_idempotent(client: Wire) -> None:
    await client.call("register", extensionId="gone")
    expected = {"success": True, "message": "Extension gone deregistered successfully"}
    assert await client.call("deregister", extensionId="gone") == expected
    assert await client.call("deregister", extensionId="gone") == expected
    assert await client.call("extensions.list") == []


async def test_characters_upsert_list_get(client: Wire, ext: str) -> None:
    created = await client.call("characters.upsert", extensionId=ext, id="c2", name="Bob")
    assert created["id"] == "c2"
    assert created["name"] == "Bob"
    assert TIMESTAMP.fullmatch(created["createdAt"])
    assert created["createdAt"] == created["updatedAt"]
    characters = await client.call("characters.list", extensionId=ext)
    assert [c["id"] for c in characters] == ["c1", "c2"]
    assert set(characters[0]) == {"id", "name", "createdAt", "updatedAt"}
    full = await client.call("characters.get", extensionId=ext, id="c1")
    assert full["character"]["name"] == "Alice"
    assert [i["instance"]["id"] for i in full["instances"]] == ["i1"]
    assert full["instances"][0]["data"] == {}


async def test_character_upsert_without_name_keeps_it(client: Wire, ext: str) -> None:
    before = (await client.call("characters.get", extensionId=ext, id="c1"))["character"]
    kept = await client.call("characters.upsert", extensionId=ext, id="c1")
    assert kept["name"] == "Alice"
    assert kept["createdAt"] == before["createdAt"]
    assert kept["updatedAt"] >= before["updatedAt"]
    nulled = await client.call("characters.upsert", extensionId=ext, id="c1", name=None)
    assert nulled["name"] == "Alice"
    renamed = await client.call("characters.upsert", extensionId=ext, id="c1", name="Al")
    assert renamed["name"] == "Al"


async def test_character_without_name_has_null_name(client: Wire, ext: str) -> None:
    created = await client.call("characters.upsert", extensionId=ext, id="nameless")
    assert created["name"] is None


async def test_characters_delete_cascades(client: Wire, ext: str) -> None:
    await client.call("data.set", extensionId=ext, id="i1", key="k", value=1)
    assert await client.call("characters.delete", extensionId=ext, id="c1") == {"success": True}
    assert await client.call("characters.list", extensionId=ext) == []
    error = await client.error("instances.get", extensionId=ext, id="i1")
    assert error["code"] == -32002
    # The id is free again, with nothing left over from before.
    await client.call("characters.upsert", extensionId=ext, id="c1")
    await client.call("instances.upsert", extensionId=ext, id="i1", characterId="c1")
    assert await client.call("data.get", extensionId=ext, id="i1") == {}


async def test_instances_upsert_list_get(client: Wire, ext: str) -> None:
    second = await client.call(
        "instances.upsert", extensionId=ext, id="i2", characterId="c1", name="Run 2"
    )
    assert second["characterId"] == "c1"
    assert second["name"] == "Run 2"
    assert set(second) == {"id", "characterId", "name", "createdAt", "updatedAt"}
    listed = await client.call("instances.list", extensionId=ext, characterId="c1")
    assert [i["id"] for i in listed] == ["i1", "i2"]
    full = await client.call("instances.get", extensionId=ext, id="i2")
    assert full == {"instance": second, "data": {}}


async def test_instances_list_of_unknown_character_is_empty(client: Wire, ext: str) -> None:
    assert await client.call("instances.list", extensionId=ext, characterId="nobody") == []


async def test_instance_upsert_moves_between_characters(client: Wire, ext: str) -> None:
    await client.call("characters.upsert", extensionId=ext, id="c2")
    await client.call("data.set", extensionId=ext, id="i1", key="k", value="v")
    moved = await client.call("instances.upsert", extensionId=ext, id="i1", characterId="c2")
    assert moved["characterId"] == "c2"
    assert await client.call("instances.list", extensionId=ext, characterId="c1") == []
    full = await client.call("instances.get", extensionId=ext, id="i1")
    assert full["data"] == {"k": "v"}


async def test_instance_upsert_updates_timestamp_but_data_writes_do_not(
    client: Wire, ext: str
) -> None:
    first = (await client.call("instances.get", extensionId=ext, id="i1"))["instance"]
    await client.call("data.set", extensionId=ext, id="i1", key="k", value=1)
    after_data = (await client.call("instances.get", extensionId=ext, id="i1"))["instance"]
    assert after_data["updatedAt"] == first["updatedAt"]
    again = await client.call("instances.upsert", extensionId=ext, id="i1", characterId="c1")
    assert again["createdAt"] == first["createdAt"]
    assert again["updatedAt"] >= first["updatedAt"]


async def test_instances_delete_and_delete_all(client: Wire, ext: str) -> None:
    for iid in ("i2", "i3"):
        await client.call("instances.upsert", extensionId=ext, id=iid, characterId="c1")
    assert await client.call("instances.delete", extensionId=ext, id="i2") == {"success": True}
    result = await client.call("instances.deleteAll", extensionId=ext, characterId="c1")
    assert result == {"success": True, "deletedCount": 2}
    assert await client.call("instances.list", extensionId=ext, characterId="c1") == []
    none = await client.call("instances.deleteAll", extensionId=ext, characterId="nobody")
    assert none == {"success": True, "deletedCount": 0}


async def test_data_set_get_get_key(client: Wire, ext: str) -> None:
    result = await client.call("data.set", extensionId=ext, id="i1", key="hp", value=57)
    assert result == {"success": True, "key": "hp", "value": 57}
    await client.call("data.set", extensionId=ext, id="i1", key="tags", value=["a"])
    await client.call("data.set", extensionId=ext, id="i1", key="hp", value=58)
    assert await client.call("data.get", extensionId=ext, id="i1") == {"hp": 58, "tags": ["a"]}
    assert await client.call("data.getKey", extensionId=ext, id="i1", key="tags") == {"tags": ["a"]}


async def test_an_instance_too_large_to_read_on_the_event_loop_is_read_whole(
    client: Wire, ext: str
) -> None:
    # Far past what a read may cost on the event loop: it moves to the reader's thread.
    values = {f"k{n}": {"n": n} for n in range(5_000)}
    await client.call("data.merge", extensionId=ext, id="i1", data=values)
    assert await client.call("data.get", extensionId=ext, id="i1") == values
    full = await client.call("instances.get", extensionId=ext, id="i1")
    assert full["data"] == values
    assert await client.call("data.getKey", extensionId=ext, id="i1", key="k4999") == {
        "k4999": {"n": 4999}
    }


async def test_data_delete_key_and_clear(client: Wire, ext: str) -> None:
    await client.call("data.merge", extensionId=ext, id="i1", data={"a": 1, "b": 2})
    assert await client.call("data.deleteKey", extensionId=ext, id="i1", key="a") == {
        "success": True
    }
    assert await client.call("data.get", extensionId=ext, id="i1") == {"b": 2}
    assert await client.call("data.clear", extensionId=ext, id="i1") == {"success": True}
    assert await client.call("data.clear", extensionId=ext, id="i1") == {"success": False}
    assert await client.call("data.get", extensionId=ext, id="i1") == {}


async def test_data_override_replaces_everything(client: Wire, ext: str) -> None:
    await client.call("data.merge", extensionId=ext, id="i1", data={"a": 1, "b": 2})
    result = await client.call("data.override", extensionId=ext, id="i1", data={"c": 3})
    assert result == {"success": True, "message": "Instance data overridden successfully"}
    assert await client.call("data.get", extensionId=ext, id="i1") == {"c": 3}
    await client.call("data.override", extensionId=ext, id="i1", data={})
    assert await client.call("data.get", extensionId=ext, id="i1") == {}


async def test_data_merge_is_shallow(client: Wire, ext: str) -> None:
    await client.call("data.set", extensionId=ext, id="i1", key="stats", value={"hp": 1, "mp": 2})
    await client.call("data.set", extensionId=ext, id="i1", key="keep", value=True)
    result = await client.call(
        "data.merge", extensionId=ext, id="i1", data={"stats": {"hp": 9}, "new": None}
    )
    assert result == {"success": True, "message": "Instance data merged successfully"}
    assert await client.call("data.get", extensionId=ext, id="i1") == {
        "stats": {"hp": 9},
        "keep": True,
        "new": None,
    }


async def test_data_remove_counts_distinct_present_keys(client: Wire, ext: str) -> None:
    await client.call("data.merge", extensionId=ext, id="i1", data={"a": 1, "b": 2, "c": 3})
    result = await client.call(
        "data.remove", extensionId=ext, id="i1", keys=["a", "a", "missing", "b"]
    )
    assert result == {"success": True, "removedCount": 2}
    assert await client.call("data.get", extensionId=ext, id="i1") == {"c": 3}
    empty = await client.call("data.remove", extensionId=ext, id="i1", keys=[])
    assert empty == {"success": True, "removedCount": 0}


async def test_cross_reads_mirror_the_plain_reads(client: Wire, ext: str) -> None:
    await client.call("data.set", extensionId=ext, id="i1", key="k", value={"x": [1]})
    for method, params in [
        ("characters.list", {}),
        ("characters.get", {"id": "c1"}),
        ("instances.list", {"characterId": "c1"}),
        ("instances.get", {"id": "i1"}),
        ("data.get", {"id": "i1"}),
        ("data.getKey", {"id": "i1", "key": "k"}),
    ]:
        plain = await client.call(method, extensionId=ext, **params)
        assert await client.call(f"cross.{method}", extensionId=ext, **params) == plain


async def test_cross_methods_are_read_only(client: Wire, ext: str) -> None:
    error = await client.error("cross.data.set", extensionId=ext, id="i1", key="k", value=1)
    assert error["code"] == -32601


async def test_one_connection_sees_other_connections_writes(vtd, client: Wire, ext: str) -> None:
    async with await vtd.connect() as other:
        await other.call("data.set", extensionId=ext, id="i1", key="from", value="other")
    assert await client.call("data.getKey", extensionId=ext, id="i1", key="from") == {
        "from": "other"
    }
