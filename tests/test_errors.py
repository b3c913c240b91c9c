"""Every error code the protocol lists, each naming the thing at fault."""

from __future__ import annotations

import json

import anyio
import pytest

from tests.wire import RpcFailed, Wire, nested, request

pytestmark = pytest.mark.anyio


def _error(reply: dict) -> dict:
    assert "result" not in reply, reply
    assert "Traceback" not in json.dumps(reply)
    return reply["error"]


async def test_parse_error_keeps_the_connection_usable(client: Wire) -> None:
    await client.send_raw(b'{"jsonrpc": "2.0", "method": \n')
    reply = await client.receive()
    assert reply["id"] is None
    assert _error(reply)["code"] == -32700
    assert await client.call("ping") == {"message": "Pong!"}


@pytest.mark.parametrize(
    "line",
    [
        b"\xff\xfe not utf-8\n",
        b'{"jsonrpc": "2.0", "method": "ping", "id": NaN}\n',
        b'{"jsonrpc": "2.0", "method": "ping", "id": 1, "params": {"message": Infinity}}\n',
        b"[1, 2\n",
    ],
)
async def test_not_json_is_a_parse_error(client: Wire, line: bytes) -> None:
    await client.send_raw(line)
    error = _error(await client.receive())
    assert error["code"] == -32700
    assert isinstance(error["data"]["reason"], str)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"jsonrpc": "1.0", "method": "ping", "id": 1}, "jsonrpc"),
        ({"method": "ping", "id": 1}, "jsonrpc"),
        ({"jsonrpc": "2.0", "id": 1}, "method"),
        ({"jsonrpc": "2.0", "method": 5, "id": 1}, "method"),
        ({"jsonrpc": "2.0", "method": "ping", "id": 1, "parms": {}}, "parms"),
    ],
)
async def test_bad_envelope_is_invalid_request(client: Wire, message: dict, field: str) -> None:
    reply = await client.response(message)
    error = _error(reply)
    assert error["code"] == -32600
    assert error["data"]["field"] == field
    assert reply["id"] == 1


@pytest.mark.parametrize(
    "message", [5, "ping", None, [], {"jsonrpc": "2.0", "method": "ping", "id": {}}]
)
async def test_non_request_is_invalid_request_with_null_id(client: Wire, message: object) -> None:
    reply = await client.response(message)
    assert _error(reply)["code"] == -32600
    assert reply["id"] is None


async def test_unknown_method(client: Wire) -> None:
    error = await client.error("characters.frobnicate")
    assert error["code"] == -32601
    assert error["data"] == {"method": "characters.frobnicate"}


async def test_positional_params_are_invalid_params(client: Wire) -> None:
    reply = await client.response({"jsonrpc": "2.0", "method": "ping", "params": ["x"], "id": 3})
    error = _error(reply)
    assert error["code"] == -32602
    assert error["data"]["field"] == "params"
    assert reply["id"] == 3


async def test_methods_without_params_accept_empty_object_or_none(client: Wire) -> None:
    for message in (
        {"jsonrpc": "2.0", "method": "probe", "id": 1},
        {"jsonrpc": "2.0", "method": "probe", "params": {}, "id": 1},
    ):
        assert (await client.response(message))["result"]["ok"] is True


async def test_null_id_is_a_request_and_notifications_get_no_answer(client: Wire) -> None:
    await client.send(request("ping", {"message": "notification"}))
    await client.send({"jsonrpc": "2.0", "method": "ping", "id": None})
    reply = await client.receive()
    assert reply == {"jsonrpc": "2.0", "result": {"message": "Pong!"}, "id": None}


async def test_blank_lines_are_ignored(client: Wire) -> None:
    await client.send_raw(b"\n   \n\t\r\n")
    assert await client.call("ping") == {"message": "Pong!"}


async def test_whitespace_that_json_does_not_allow_is_a_parse_error(client: Wire) -> None:
    await client.send_raw(b"\x0b\n")  # found by the fuzz tests: not blank, not JSON
    assert _error(await client.receive())["code"] == -32700


@pytest.mark.parametrize(
    ("params", "field", "reason_part"),
    [
        ({}, "extensionId", "required"),
        ({"extensionId": 5}, "extensionId", "string"),
        ({"extensionId": ""}, "extensionId", "empty"),
        ({"extensionId": "a" * 129}, "extensionId", "longer than 128"),
        ({"extensionId": "abc\n"}, "extensionId", "letters"),
        ({"extensionId": "../etc"}, "extensionId", "letters"),
        ({"extensionId": "caf\u00e9"}, "extensionId", "letters"),
        ({"extensionId": "ok", "extra": 1}, "extra", "unknown param"),
        ({"extensionId": "ok", "extensionid": 1}, "extensionid", "unknown param"),
    ],
)
async def test_register_params_are_checked(
    client: Wire, params: dict, field: str, reason_part: str
) -> None:
    error = await client.error("register", **params)
    assert error["code"] == -32602
    assert error["data"]["field"] == field
    assert reason_part in error["data"]["reason"]
    assert field in error["message"]


@pytest.mark.parametrize(
    ("method", "params", "field", "reason_part"),
    [
        ("characters.get", {"id": "a" * 257}, "id", "longer than 256"),
        ("characters.get", {"id": "has space"}, "id", "letters"),
        ("characters.upsert", {"id": "c", "name": 5}, "name", "string or null"),
        ("characters.upsert", {"id": "c", "name": "n" * 1025}, "name", "1024"),
        ("instances.upsert", {"id": "i"}, "characterId", "required"),
        ("data.getKey", {"id": "i1", "key": ""}, "key", "empty"),
        ("data.getKey", {"id": "i1", "key": "k" * 1025}, "key", "longer than 1024"),
        ("data.getKey", {"id": "i1", "key": "\ud800"}, "key", "surrogate"),
        ("data.set", {"id": "i1", "key": "k"}, "value", "required"),
        ("data.remove", {"id": "i1", "keys": ["a", 5]}, "keys", "keys[1] is not a string"),
        ("data.remove", {"id": "i1", "keys": "a"}, "keys", "array"),
        ("data.merge", {"id": "i1", "data": [1]}, "data", "object"),
        ("data.override", {"id": "i1", "data": {"": 1}}, "data", "empty"),
        ("ping", {"message": 5}, "message", "string"),
    ],
)
async def test_params_are_checked_and_named(
    client: Wire, ext: str, method: str, params: dict, field: str, reason_part: str
) -> None:
    error = (
        await client.error(method, extensionId=ext, **params)
        if method != "ping"
        else (await client.error(method, **params))
    )
    assert error["code"] == -32602
    assert error["data"]["field"] == field
    assert reason_part in error["data"]["reason"]
    assert field in error["message"]


async def test_the_message_names_the_field_once(client: Wire, ext: str) -> None:
    error = await client.error("data.remove", extensionId=ext, id="i1", keys=["a", 5])
    assert error["message"] == "Invalid params: keys[1] is not a string"
    error = await client.error("data.set", extensionId=ext, id="i1", key="k", value=nested(257))
    assert error["message"] == "Invalid params: value is nested deeper than 256 levels"
    error = await client.error("data.getKey", extensionId=ext, id="i1", key="")
    assert error["message"] == "Invalid params: key is empty"
    error = await client.error("characters.get", extensionId=ext, id="has space")
    assert error["message"].startswith("Invalid params: id may contain only letters")


async def test_a_key_of_exactly_1024_code_points_is_fine(client: Wire, ext: str) -> None:
    key = "\U0001f600" * 1024
    await client.call("data.set", extensionId=ext, id="i1", key=key, value=1)
    assert await client.call("data.getKey", extensionId=ext, id="i1", key=key) == {key: 1}


async def test_value_nested_too_deep_is_invalid_params(client: Wire, ext: str) -> None:
    fine = nested(256)
    await client.call("data.set", extensionId=ext, id="i1", key="deep", value=fine)
    error = await client.error("data.set", extensionId=ext, id="i1", key="deep", value=[fine])
    assert error["code"] == -32602
    assert error["data"]["field"] == "value"
    error = await client.error("data.merge", extensionId=ext, id="i1", data={"x": [fine]})
    assert error["data"]["field"] == "data"


async def test_message_nested_too_deep_is_refused_whole(client: Wire) -> None:
    await client.send_raw(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    reply = await client.receive()
    assert reply["id"] is None
    assert _error(reply)["code"] == -32600
    await client.send_raw(
        b'{"jsonrpc":"2.0","method":"ping","id":1,"params":{"message":'
        + b"[" * 600
        + b"]" * 600
        + b"}}\n"
    )
    reply = await client.receive()
    assert _error(reply)["code"] == -32600
    assert await client.call("ping") == {"message": "Pong!"}


async def test_unregistered_extension(client: Wire) -> None:
    error = await client.error("characters.list", extensionId="nobody")
    assert error["code"] == -32001
    assert error["data"] == {"extensionId": "nobody"}
    error = await client.error("cross.data.get", extensionId="nobody", id="x")
    assert error["code"] == -32001


async def test_validation_comes_before_registration(client: Wire) -> None:
    error = await client.error("characters.list", extensionId="bad id")
    assert error["code"] == -32602


async def test_deregistered_extension_is_not_registered(client: Wire, ext: str) -> None:
    await client.call("deregister", extensionId=ext)
    error = await client.error("data.get", extensionId=ext, id="i1")
    assert error["code"] == -32001


@pytest.mark.parametrize(
    ("method", "params", "data"),
    [
        ("characters.get", {"id": "c9"}, {"kind": "character", "id": "c9"}),
        ("characters.delete", {"id": "c9"}, {"kind": "character", "id": "c9"}),
        ("instances.get", {"id": "i9"}, {"kind": "instance", "id": "i9"}),
        ("instances.delete", {"id": "i9"}, {"kind": "instance", "id": "i9"}),
        ("instances.upsert", {"id": "i9", "characterId": "c9"}, {"kind": "character", "id": "c9"}),
        ("data.get", {"id": "i9"}, {"kind": "instance", "id": "i9"}),
        ("data.set", {"id": "i9", "key": "k", "value": 1}, {"kind": "instance", "id": "i9"}),
        ("data.clear", {"id": "i9"}, {"kind": "instance", "id": "i9"}),
        ("data.merge", {"id": "i9", "data": {}}, {"kind": "instance", "id": "i9"}),
        ("data.remove", {"id": "i9", "keys": []}, {"kind": "instance", "id": "i9"}),
        (
            "data.getKey",
            {"id": "i1", "key": "nope"},
            {"kind": "key", "id": "nope", "instanceId": "i1"},
        ),
        (
            "data.deleteKey",
            {"id": "i1", "key": "nope"},
            {"kind": "key", "id": "nope", "instanceId": "i1"},
        ),
    ],
)
async def test_not_found_names_the_thing(
    client: Wire, ext: str, method: str, params: dict, data: dict
) -> None:
    error = await client.error(method, extensionId=ext, **params)
    assert error["code"] == -32002
    assert error["data"] == data


async def test_batch_answers_each_element(client: Wire, ext: str) -> None:
    batch = [
        request("data.set", {"extensionId": ext, "id": "i1", "key": "a", "value": 1}, 1),
        request("data.set", {"extensionId": ext, "id": "nope", "key": "a", "value": 1}, 2),
        request("ping", {}),
        5,
        request("data.get", {"extensionId": ext, "id": "i1"}, 3),
    ]
    replies = await client.response(batch)
    by_id = {reply["id"]: reply for reply in replies if reply["id"] is not None}
    assert by_id[1]["result"]["success"] is True
    assert by_id[2]["error"]["code"] == -32002
    assert "result" in by_id[3]
    assert [r["error"]["code"] for r in replies if r["id"] is None] == [-32600]
    assert len(replies) == 4


async def test_batch_of_notifications_gets_no_answer(client: Wire) -> None:
    await client.send([request("ping", {}), request("ping", {})])
    assert await client.call("ping", message="after") == {"message": "Pong! after"}


async def test_batch_larger_than_the_in_flight_cap_is_refused(client: Wire) -> None:
    reply = await client.response([request("ping", {}, n) for n in range(129)])
    assert _error(reply)["code"] == -32600
    replies = await client.response([request("ping", {}, n) for n in range(128)])
    assert len(replies) == 128


async def test_message_at_the_size_limit_is_served(vtd) -> None:
    limit = vtd.config.max_message
    head = b'{"jsonrpc":"2.0","method":"ping","id":1,"params":{"message":"'
    tail = b'"}}'
    line = head + b"x" * (limit - len(head) - len(tail)) + tail
    assert len(line) == limit
    async with await vtd.connect() as wire:
        await wire.send_raw(line + b"\n")
        reply = await wire.receive()
        assert len(reply["result"]["message"]) == limit - len(head) - len(tail) + len("Pong! ")


async def test_message_too_large_gets_one_error_and_the_connection_closes(vtd) -> None:
    limit = vtd.config.max_message
    async with await vtd.connect() as wire:
        await wire.send_raw(b'"' + b"x" * limit + b'"\n')
        reply = await wire.receive()
        assert reply["id"] is None
        error = _error(reply)
        assert error["code"] == -32600
        assert error["data"]["limit"] == limit
        with anyio.fail_after(10), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await wire.reader.receive()


@pytest.mark.parametrize("request_id", [1, None])
async def test_a_stream_ending_in_the_middle_of_a_message_gets_one_error(
    vtd, ext: str, request_id: int | None
) -> None:
    # socat after `printf` with no final newline: the message is not taken,
    # and the client is told why instead of hearing nothing.
    # A notification is refused out loud too: nothing else would say why.
    message = request(
        "data.set", {"extensionId": ext, "id": "i1", "key": "k", "value": 1}, request_id
    )
    async with await vtd.connect() as wire:
        await wire.send_raw(b'{"jsonrpc":"2.0","method":"ping","id":7}\n  \n')
        await wire.send_raw(json.dumps(message).encode())
        await wire.stream.send_eof()
        assert (await wire.receive())["result"] == {"message": "Pong!"}
        reply = await wire.receive()
        assert reply["id"] is None
        error = _error(reply)
        assert error["code"] == -32600
        assert error["data"] == {"reason": "no newline after the last message"}
        with anyio.fail_after(10), pytest.raises(anyio.EndOfStream):
            await wire.reader.receive()
    async with await vtd.connect() as wire:
        with pytest.raises(RpcFailed) as refused:
            await wire.call("data.getKey", extensionId=ext, id="i1", key="k")
        assert refused.value.code == -32002  # never written


async def test_a_stream_ending_after_blank_space_gets_no_error(client: Wire) -> None:
    await client.send_raw(b'{"jsonrpc":"2.0","method":"ping","id":1}\n \t')
    await client.stream.send_eof()
    assert (await client.receive())["result"] == {"message": "Pong!"}
    with anyio.fail_after(10), pytest.raises(anyio.EndOfStream):
        await client.reader.receive()


class _Broken(RuntimeError):
    """A failure no method expects, carrying a detail no client may see."""


def _break(*args: object, **kwargs: object) -> None:
    raise _Broken("secret detail /var/lib/vtd/ext.sqlite")


@pytest.mark.parametrize(
    ("broken", "method", "params", "batch"),
    [
        ("get_data_key", "data.getKey", {"key": "k"}, False),  # on the event loop
        ("get_data_key", "data.getKey", {"key": "k"}, True),  # from a task
        ("set_data_key", "data.set", {"key": "k", "value": 1}, False),  # in the writer
        ("set_data_key", "data.set", {"key": "k", "value": 1}, True),
    ],
)
async def test_an_unexpected_failure_is_an_internal_error_logged_in_full(
    client: Wire,
    ext: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    broken: str,
    method: str,
    params: dict,
    batch: bool,
) -> None:
    monkeypatch.setattr(f"vtd.store.{broken}", _break)
    call = request(method, {"extensionId": ext, "id": "i1", **params}, 7)
    reply = await client.response([call] if batch else call)
    if batch:
        (reply,) = reply
    assert reply["id"] == 7
    error = _error(reply)
    assert error == {
        "code": -32603,
        "message": "Internal error; the daemon logged the details",
        "data": {"reason": "internal"},
    }
    assert "secret" not in json.dumps(reply)
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], _Broken)]
    assert logged, "the daemon logged no traceback of the failure"
    assert await client.call("ping") == {"message": "Pong!"}
