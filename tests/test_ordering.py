"""Pipelined writes keep their order; each write is all or nothing."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import pytest

from tests.wire import Wire, request

pytestmark = pytest.mark.anyio


async def _pipeline(client: Wire, messages: list[object]) -> list[dict]:
    await client.send_raw(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
    with anyio.fail_after(30):
        return [await client.receive() for _ in messages]


async def test_500_pipelined_sets_of_one_key_end_with_the_last(client: Wire, ext: str) -> None:
    messages = [
        request("data.set", {"extensionId": ext, "id": "i1", "key": "k", "value": n}, n)
        for n in range(500)
    ]
    replies = await _pipeline(client, messages)
    assert sorted(r["id"] for r in replies) == list(range(500))
    assert all(r["result"]["success"] for r in replies)
    assert await client.call("data.getKey", extensionId=ext, id="i1", key="k") == {"k": 499}


async def test_writes_sent_as_notifications_apply_in_order_and_free_their_slots(
    client: Wire, ext: str
) -> None:
    # More notifications than a connection has slots: had an unanswered
    # write kept its slot, the read below would never be read.
    messages = [
        request("data.set", {"extensionId": ext, "id": "i1", "key": f"k{n % 7}", "value": n})
        for n in range(300)
    ]
    await client.send_raw(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
    with anyio.fail_after(30):
        data = await client.call("data.get", extensionId=ext, id="i1")
    assert data == {f"k{k}": max(n for n in range(300) if n % 7 == k) for k in range(7)}


async def test_pipelined_batches_and_singles_keep_read_order(client: Wire, ext: str) -> None:
    messages: list[object] = []
    n = 0
    for _ in range(50):
        batch = []
        for _ in range(3):
            batch.append(
                request("data.set", {"extensionId": ext, "id": "i1", "key": "k", "value": n}, n)
            )
            n += 1
        messages.append(batch)
        messages.append(
            request("data.set", {"extensionId": ext, "id": "i1", "key": "k", "value": n}, n)
        )
        n += 1
    await _pipeline(client, messages)
    assert await client.call("data.getKey", extensionId=ext, id="i1", key="k") == {"k": n - 1}


async def test_pipelined_register_then_writes(client: Wire) -> None:
    messages = [
        request("register", {"extensionId": "fresh"}, 1),
        request("characters.upsert", {"extensionId": "fresh", "id": "c"}, 2),
        request("instances.upsert", {"extensionId": "fresh", "id": "i", "characterId": "c"}, 3),
        request("data.set", {"extensionId": "fresh", "id": "i", "key": "k", "value": 1}, 4),
        request("deregister", {"extensionId": "fresh"}, 5),
        request("data.set", {"extensionId": "fresh", "id": "i", "key": "k", "value": 2}, 6),
        request("register", {"extensionId": "fresh"}, 7),
        request("data.set", {"extensionId": "fresh", "id": "i", "key": "k", "value": 3}, 8),
    ]
    replies = {r["id"]: r for r in await _pipeline(client, messages)}
    assert all("result" in replies[i] for i in (1, 2, 3, 4, 5, 7, 8)), replies
    assert replies[6]["error"]["code"] == -32001
    assert await client.call("data.get", extensionId="fresh", id="i") == {"k": 3}


async def test_a_register_pipelined_before_a_deregister_succeeds(client: Wire, ext: str) -> None:
    # The register waits for its record to commit; by then the deregister
    # read after it has closed the extension's file. That is not a failure
    # of the register, which held until the deregister came.
    for _ in range(5):
        messages = [
            request("register", {"extensionId": ext}, 1),
            request("deregister", {"extensionId": ext}, 2),
            request("register", {"extensionId": ext}, 3),
        ]
        replies = {r["id"]: r for r in await _pipeline(client, messages)}
        assert all("result" in reply for reply in replies.values()), replies
    assert await client.call("extensions.list") == [{"extensionId": ext}]


def _random_changes(seed: int, extension_id: str, count: int) -> list[dict[str, Any]]:
    """Writes, registers and deregisters of one extension, many of them bound to fail."""
    rng = random.Random(seed)
    e = {"extensionId": extension_id}
    messages = []
    for n in range(count):
        character, instance = rng.choice(["c0", "c1"]), rng.choice(["i0", "i1", "i2"])
        key = rng.choice(["a", "b"])
        method, params = rng.choice(
            [
                ("register", e),
                ("register", e),
                ("deregister", e),
                ("characters.upsert", {**e, "id": character}),
                ("characters.delete", {**e, "id": character}),
                ("instances.upsert", {**e, "id": instance, "characterId": character}),
                ("instances.delete", {**e, "id": instance}),
                ("instances.deleteAll", {**e, "characterId": character}),
                ("data.set", {**e, "id": instance, "key": key, "value": n}),
                ("data.delete", {**e, "id": instance, "key": key}),
                ("data.merge", {**e, "id": instance, "data": {key: n}}),
                ("data.override", {**e, "id": instance, "data": {key: -n}}),
                ("data.clear", {**e, "id": instance}),
                ("data.remove", {**e, "id": instance, "keys": [key]}),
            ]
        )
        messages.append(request(method, params, n))
    return messages


def _comparable(reply: dict[str, Any], extension_id: str) -> str:
    """A reply without its times, its extension id replaced: equal for equal outcomes."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: "T" if k in ("createdAt", "updatedAt") else strip(v) for k, v in value.items()
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(reply)).replace(extension_id, "X")


async def test_pipelined_changes_answer_as_if_sent_one_at_a_time(vtd) -> None:
    # Writes keep their order within a connection, so 40 changes sent at once
    # must each be answered as they are when every one waits for the last.
    async with await vtd.connect() as wire:
        for seed in range(20):
            pipelined = {
                r["id"]: r for r in await _pipeline(wire, _random_changes(seed, f"p{seed}", 40))
            }
            for message in _random_changes(seed, f"s{seed}", 40):
                await wire.send_raw(json.dumps(message).encode() + b"\n")
                with anyio.fail_after(30):
                    one = await wire.receive()
                assert _comparable(pipelined[one["id"]], f"p{seed}") == _comparable(
                    one, f"s{seed}"
                ), (seed, message)


async def test_a_write_acknowledged_is_seen_by_the_next_read(vtd, ext: str) -> None:
    async with await vtd.connect() as writer, await vtd.connect() as reader:
        for n in range(200):
            await writer.call("data.set", extensionId=ext, id="i1", key="k", value=n)
            got = await reader.call("data.getKey", extensionId=ext, id="i1", key="k")
            assert got == {"k": n}


@pytest.mark.parametrize("method", ["data.override", "data.merge"])
async def test_one_bad_key_changes_nothing(client: Wire, ext: str, method: str) -> None:
    await client.call("data.merge", extensionId=ext, id="i1", data={"a": 1, "b": 2})
    bad = {"a": 10, "c": 30, "k" * 1025: 0}
    error = await client.error(method, extensionId=ext, id="i1", data=bad)
    assert error["code"] == -32602
    assert error["data"]["field"] == "data"
    assert await client.call("data.get", extensionId=ext, id="i1") == {"a": 1, "b": 2}


async def test_a_failing_write_in_a_group_commit_fails_only_itself(client: Wire, ext: str) -> None:
    messages = []
    for n in range(100):
        instance = "i1" if n % 2 else "missing"
        messages.append(
            request("data.set", {"extensionId": ext, "id": instance, "key": f"k{n}", "value": n}, n)
        )
    replies = {r["id"]: r for r in await _pipeline(client, messages)}
    for n in range(100):
        if n % 2:
            assert replies[n]["result"]["success"] is True
        else:
            assert replies[n]["error"]["code"] == -32002
    data = await client.call("data.get", extensionId=ext, id="i1")
    assert data == {f"k{n}": n for n in range(1, 100, 2)}


async def test_a_pipelined_read_sees_the_connections_earlier_writes(client: Wire, ext: str) -> None:
    messages: list[object] = []
    for n in range(50):
        messages.append(
            request("data.set", {"extensionId": ext, "id": "i1", "key": "k", "value": n}, 2 * n)
        )
        messages.append(
            request("data.getKey", {"extensionId": ext, "id": "i1", "key": "k"}, 2 * n + 1)
        )
    replies = {r["id"]: r for r in await _pipeline(client, messages)}
    for n in range(50):
        # It sees its own connection's earlier write; later ones may have landed too.
        assert replies[2 * n + 1]["result"]["k"] >= n


async def test_a_read_in_a_batch_sees_the_writes_before_it(client: Wire, ext: str) -> None:
    replies = await client.response(
        [
            request("data.set", {"extensionId": ext, "id": "i1", "key": "b", "value": "x"}, 1),
            request("data.get", {"extensionId": ext, "id": "i1"}, 2),
        ]
    )
    assert {r["id"]: r for r in replies}[2]["result"] == {"b": "x"}


async def test_more_pipelined_writes_than_a_writer_queues_keep_each_connections_order(
    vtd, ext: str
) -> None:
    # 12 connections x 128 in flight is more than a writer's queue holds (1,024):
    # the writes that find it full wait in tasks, and still keep their places.
    connections, per_connection = 12, 128

    async def pipeline(n: int) -> None:
        async with await vtd.connect() as wire:
            messages: list[object] = [
                request("data.set", {"extensionId": ext, "id": "i1", "key": f"k{n}", "value": v}, v)
                for v in range(per_connection)
            ]
            messages.append(
                request("data.getKey", {"extensionId": ext, "id": "i1", "key": f"k{n}"}, "read")
            )
            replies = {r["id"]: r for r in await _pipeline(wire, messages)}
            assert all("result" in replies[v] for v in range(per_connection)), replies
            assert replies["read"]["result"] == {f"k{n}": per_connection - 1}

    async with anyio.create_task_group() as tg:
        for n in range(connections):
            tg.start_soon(pipeline, n)
    async with await vtd.connect() as wire:
        stored = await wire.call("data.get", extensionId=ext, id="i1")
    assert stored == {f"k{n}": per_connection - 1 for n in range(connections)}
