"""Values come back exactly as stored: type, size and text."""

from __future__ import annotations

import pytest

from tests.wire import Wire

pytestmark = pytest.mark.anyio

VALUES = [
    "123",
    123,
    0,
    -0.5,
    1.0,
    1e300,
    2**80,
    -(2**70),
    False,
    True,
    "",
    None,
    [],
    {},
    [1, "1", 1.5, None, False, [], {}],
    {"nested": {"deeper": [{"x": None}]}},
    "ünïcødé ✓ 𝄞 日本語",
    '\u0000 control \u001f chars \n\t and "quotes" \\',
    "\ud800 lone surrogate in a value",
    " leading and trailing spaces ",
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
async def test_value_round_trips_with_its_type(client: Wire, ext: str, value: object) -> None:
    echoed = await client.call("data.set", extensionId=ext, id="i1", key="v", value=value)
    assert echoed["value"] == value
    assert type(echoed["value"]) is type(value)
    got = (await client.call("data.getKey", extensionId=ext, id="i1", key="v"))["v"]
    assert got == value
    assert type(got) is type(value)


async def test_float_one_point_zero_stays_a_float_on_the_wire(client: Wire, ext: str) -> None:
    await client.send_raw(
        b'{"jsonrpc":"2.0","id":1,"method":"data.set","params":'
        b'{"extensionId":"ext","id":"i1","key":"f","value":1.0}}\n'
    )
    await client.receive()
    await client.send_raw(
        b'{"jsonrpc":"2.0","id":2,"method":"data.getKey","params":'
        b'{"extensionId":"ext","id":"i1","key":"f"}}\n'
    )
    line = await client.reader.receive_until(b"\n", 1 << 20)
    assert b'"f":1.0' in line


async def test_string_123_is_not_a_number(client: Wire, ext: str) -> None:
    await client.call("data.merge", extensionId=ext, id="i1", data={"s": "123", "n": 123})
    assert await client.call("data.get", extensionId=ext, id="i1") == {"s": "123", "n": 123}


async def test_one_mebibyte_string(client: Wire, ext: str) -> None:
    big = "x" * (1 << 20) + "✓"
    await client.call("data.set", extensionId=ext, id="i1", key="big", value=big)
    assert (await client.call("data.getKey", extensionId=ext, id="i1", key="big"))["big"] == big


async def test_an_instance_with_a_large_value_reads_whole_every_way(client: Wire, ext: str) -> None:
    # Too long to read on the event loop: these reads are answered by the thread.
    big = "✓" * 100_000
    data = {"small": 1, "big": big, "after": [2]}
    await client.call("data.override", extensionId=ext, id="i1", data=data)
    assert await client.call("data.get", extensionId=ext, id="i1") == data
    assert (await client.call("instances.get", extensionId=ext, id="i1"))["data"] == data
    assert await client.call("data.getKey", extensionId=ext, id="i1", key="big") == {"big": big}
    assert await client.call("data.getKey", extensionId=ext, id="i1", key="small") == {"small": 1}


async def test_unicode_keys_and_ids(client: Wire, ext: str) -> None:
    keys = {"日本": 1, "𝄞 clef": 2, "with space": 3, "a/b\\c": 4}
    await client.call("data.override", extensionId=ext, id="i1", data=keys)
    assert await client.call("data.get", extensionId=ext, id="i1") == keys


async def test_data_keys_keep_their_first_set_order(client: Wire, ext: str) -> None:
    for key in ("zeta", "alpha", "mid"):
        await client.call("data.set", extensionId=ext, id="i1", key=key, value=0)
    await client.call("data.set", extensionId=ext, id="i1", key="zeta", value=1)
    data = await client.call("data.get", extensionId=ext, id="i1")
    assert list(data) == ["zeta", "alpha", "mid"]


@pytest.mark.parametrize("size", [10, 2000], ids=["small", "over-64-KiB-in-all"])
async def test_a_whole_instance_comes_back_in_first_set_order(
    client: Wire, ext: str, size: int
) -> None:
    # Keys SQLite must quote as JSON itself when it joins the stored values
    # into one object; at 2,000 characters each the 40 values come to about
    # 80 KiB, which the event loop's connection refuses to build, so the
    # read is answered from the reader's thread instead.
    keys = [f'k{n} "q" \\ \u0001 ✓ 𝄞' for n in range(39, -1, -1)]
    expected = {key: {"n": n, "text": "x" * size} for n, key in enumerate(keys)}
    for key, value in expected.items():
        await client.call("data.set", extensionId=ext, id="i1", key=key, value=value)
    await client.call("data.set", extensionId=ext, id="i1", key=keys[0], value=0)
    expected[keys[0]] = 0
    data = await client.call("data.get", extensionId=ext, id="i1")
    assert list(data.items()) == list(expected.items())
    full = await client.call("instances.get", extensionId=ext, id="i1")
    assert list(full["data"].items()) == list(expected.items())
    # characters.get joins the same values in Python (one query for all of a
    # character's instances): it must quote and order them the same way.
    character = await client.call("characters.get", extensionId=ext, id="c1")
    (instance,) = [i for i in character["instances"] if i["instance"]["id"] == "i1"]
    assert list(instance["data"].items()) == list(expected.items())


async def test_overflowing_number_is_refused_not_stored_as_infinity(client: Wire) -> None:
    await client.send_raw(
        b'{"jsonrpc":"2.0","id":1,"method":"data.set","params":'
        b'{"extensionId":"ext","id":"i1","key":"f","value":1e400}}\n'
    )
    reply = await client.receive()
    assert reply["error"]["code"] == -32700
