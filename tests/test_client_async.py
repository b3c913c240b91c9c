"""The async client against a real daemon: methods, errors, multiplexing, reconnects."""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.conftest import RunningDaemon, start_daemon
from tests.wire import TOO_BIG_TO_SEND
from vtd.config import Config
from vtd_client import (
    AsyncClient,
    CallTimeout,
    Character,
    Client,
    ConnectionLost,
    DaemonUnavailable,
    FullCharacter,
    FullInstance,
    Instance,
    InvalidParams,
    NotFound,
    NotRegistered,
    TransportError,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def aclient(vtd: RunningDaemon):
    async with AsyncClient(vtd.socket_path, timeout=10) as client:
        yield client


@pytest.fixture
async def aext(aclient: AsyncClient):
    extension = aclient.extension("async-ext")
    await extension.register()
    await extension.upsert_character("c1", "Alice")
    await extension.upsert_instance("i1", "c1")
    return extension


async def test_every_method(aclient: AsyncClient, aext) -> None:
    assert await aclient.ping() == "Pong!"
    assert await aclient.ping("x") == "Pong! x"
    assert await aclient.probe() == "0.1.0"
    assert await aclient.list_extensions() == ["async-ext"]
    created = await aext.upsert_character("c2", "Bob")
    assert isinstance(created, Character)
    assert [c.id for c in await aext.list_characters()] == ["c1", "c2"]
    assert isinstance(await aext.get_character("c1"), FullCharacter)
    moved = await aext.upsert_instance("i2", "c2", name="n")
    assert isinstance(moved, Instance)
    assert [i.id for i in await aext.list_instances("c2")] == ["i2"]
    assert isinstance(await aext.get_instance("i2"), FullInstance)
    await aext.set_data_key("i1", "k", "123")
    assert await aext.get_data_key("i1", "k") == "123"
    await aext.merge_data("i1", {"a": 1, "b": 2})
    await aext.delete_data_key("i1", "a")
    assert await aext.remove_data_keys("i1", ["b", "zz"]) == 1
    assert await aext.get_data("i1") == {"k": "123"}
    await aext.override_data("i1", {"o": None})
    assert await aext.get_data("i1") == {"o": None}
    assert await aext.clear_data("i1") is True
    cross = aclient.cross("async-ext")
    assert [c.id for c in await cross.list_characters()] == ["c1", "c2"]
    assert (await cross.get_character("c2")).instances[0].instance.id == "i2"
    assert [i.id for i in await cross.list_instances("c2")] == ["i2"]
    assert (await cross.get_instance("i1")).data == {}
    assert await cross.get_data("i1") == {}
    await aext.delete_instance("i2")
    assert await aext.delete_all_instances("c1") == 1
    await aext.delete_character("c2")
    await aclient.deregister("async-ext")
    assert await aclient.list_extensions() == []


async def test_errors(aclient: AsyncClient, aext) -> None:
    with pytest.raises(InvalidParams) as invalid:
        await aext.set_data_key("i1", "k" * 2000, 1)
    assert invalid.value.field == "key"
    with pytest.raises(NotFound) as missing:
        await aext.get_instance("nope")
    assert missing.value.kind == "instance"
    with pytest.raises(NotRegistered):
        await aclient.cross("other").get_data("i1")


async def test_1000_concurrent_calls_share_one_connection(aclient: AsyncClient, aext) -> None:
    results: dict[int, object] = {}

    async def one(n: int) -> None:
        if n % 2:
            await aext.set_data_key("i1", f"k{n}", n)
            results[n] = await aext.get_data_key("i1", f"k{n}")
        else:
            results[n] = await aclient.ping(str(n))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(1000):
                tg.start_soon(one, n)
    assert results == {n: (n if n % 2 else f"Pong! {n}") for n in range(1000)}
    assert aclient._connection is not None  # one connection served them all


async def test_batch(aclient: AsyncClient, aext) -> None:
    results = await aclient.batch(
        [("ping", {}), ("data.getKey", {"extensionId": "async-ext", "id": "i1", "key": "x"})],
        return_exceptions=True,
    )
    assert results[0] == {"message": "Pong!"}
    assert isinstance(results[1], NotFound)


async def test_reconnects_after_a_daemon_restart(config: Config) -> None:
    assert config.socket_path is not None
    async with AsyncClient(config.socket_path, timeout=10) as client:
        async with anyio.create_task_group() as tg:
            first = await start_daemon(config, tg)
            await client.register("kept")
            first.daemon.stop()
        async with anyio.create_task_group() as tg:
            second = await start_daemon(config, tg)
            assert await client.list_extensions() == ["kept"]
            second.daemon.stop()


async def test_unavailable_and_outside_async_with(short_dir: Path) -> None:
    async with AsyncClient(short_dir / "none.sock") as client:
        with pytest.raises(DaemonUnavailable):
            await client.ping()
    with pytest.raises(TransportError):
        await AsyncClient(short_dir / "none.sock").ping()


async def _hang_up_once(
    path: Path, seen: list[bytes], *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """A peer that reads one request and hangs up, then answers the next connection."""
    async with await anyio.create_unix_listener(path) as listener:
        task_status.started()
        first = await listener.accept()
        async with first:
            seen.append(await first.receive())
        second = await listener.accept()
        async with second:
            line = await second.receive()
            seen.append(line)
            request = json.loads(line)
            reply = {"jsonrpc": "2.0", "result": {"message": "Pong!"}, "id": request["id"]}
            await second.send(json.dumps(reply).encode() + b"\n")


async def test_a_call_in_flight_when_the_connection_drops_raises_and_is_not_resent(
    short_dir: Path,
) -> None:
    path = short_dir / "peer.sock"
    seen: list[bytes] = []
    async with anyio.create_task_group() as tg:
        await tg.start(_hang_up_once, path, seen)
        with anyio.fail_after(10):
            async with AsyncClient(path, timeout=10) as client:
                with pytest.raises(ConnectionLost):
                    await client.ping()
                assert await client.ping() == "Pong!"
    assert len(seen) == 2  # one request each time: the lost call was never resent


async def test_sync_client_in_flight_drop_raises_and_is_not_resent(short_dir: Path) -> None:
    path = short_dir / "peer.sock"
    seen: list[bytes] = []

    def use_client() -> str:
        with Client(path, timeout=10) as client:
            with pytest.raises(ConnectionLost):
                client.ping()
            return client.ping()

    async with anyio.create_task_group() as tg:
        await tg.start(_hang_up_once, path, seen)
        with anyio.fail_after(10):
            assert await anyio.to_thread.run_sync(use_client) == "Pong!"
    assert len(seen) == 2


async def _read_to_end(stream: SocketStream) -> bytes:
    """Everything the client sends, until it closes the connection."""
    data = b""
    with suppress(anyio.EndOfStream):
        while True:
            data += await stream.receive()
    return data


async def _never_read_the_first(
    path: Path,
    first_bytes: list[bytes],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A peer that reads nothing of the first connection until the second is answered."""
    async with await anyio.create_unix_listener(path) as listener:
        task_status.started()
        async with await listener.accept() as first:
            async with await listener.accept() as second:
                line = await BufferedByteReceiveStream(second).receive_until(b"\n", 1 << 20)
                reply = {
                    "jsonrpc": "2.0",
                    "result": {"message": "Pong!"},
                    "id": json.loads(line)["id"],
                }
                await second.send(json.dumps(reply).encode() + b"\n")
            first_bytes.append(await _read_to_end(first))


async def test_a_call_cut_short_while_sending_leaves_the_next_call_a_clean_line(
    short_dir: Path,
) -> None:
    # The peer never reads, so 8 MB cannot all be sent: the timeout cuts the
    # send short, and part of the line has gone out. The next call must not
    # go after it, where it would be read as its end.
    path = short_dir / "peer.sock"
    first_bytes: list[bytes] = []
    async with anyio.create_task_group() as tg:
        await tg.start(_never_read_the_first, path, first_bytes)
        with anyio.fail_after(20):
            async with AsyncClient(path, timeout=10) as client:
                with anyio.move_on_after(0.5) as sending:
                    await client.call(
                        "data.override", extensionId="x", id="i", data=TOO_BIG_TO_SEND
                    )
                assert sending.cancelled_caught
                assert await client.ping() == "Pong!"
    (cut_short,) = first_bytes
    assert cut_short.startswith(b'{"jsonrpc"')
    assert b"\n" not in cut_short  # the line was never finished, and nothing followed it


async def _answer_nothing(
    path: Path,
    drain: anyio.Event,
    received: list[bytes],
    ended: anyio.Event,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A peer that answers nothing and reads nothing until ``drain``, then reads to the end."""
    async with await anyio.create_unix_listener(path) as listener:
        task_status.started()
        async with await listener.accept() as only:
            await drain.wait()
            received.append(await _read_to_end(only))
            ended.set()


async def test_a_retired_connection_closes_once_its_last_call_gives_up(short_dir: Path) -> None:
    # A ping is sent and waits; a large call is cut short while sending, which
    # retires the connection with the ping still waiting. When the ping times
    # out too, nothing waits on the connection any more: it must close then,
    # not linger until the daemon answers (a stopped daemon never does).
    path = short_dir / "peer.sock"
    received: list[bytes] = []
    ping_gave_up, ended = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(_answer_nothing, path, ping_gave_up, received, ended)
        with anyio.fail_after(20):
            async with AsyncClient(path, timeout=2) as client:

                async def ping() -> None:
                    with pytest.raises(CallTimeout):
                        await client.ping()
                    ping_gave_up.set()

                async with anyio.create_task_group() as calls:
                    calls.start_soon(ping)
                    await anyio.wait_all_tasks_blocked()  # the ping is sent and waits
                    with anyio.move_on_after(0.5) as sending:
                        await client.call(
                            "data.override", extensionId="x", id="i", data=TOO_BIG_TO_SEND
                        )
                    assert sending.cancelled_caught
                # The peer reads to the end of the stream while the client is still open.
                with anyio.fail_after(5):
                    await ended.wait()
    (data,) = received
    first, rest = data.split(b"\n", 1)
    assert json.loads(first)["method"] == "ping"
    assert rest.startswith(b'{"jsonrpc"')
    assert b"\n" not in rest  # the cut line was never finished, and nothing followed it
