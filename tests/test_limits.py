"""Limits that protect the daemon and other clients from one connection."""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from tests.conftest import start_daemon
from tests.wire import eventually, request
from vtd.config import Config
from vtd.logs import OccasionalWarning

pytestmark = pytest.mark.anyio


async def test_a_client_that_never_reads_does_not_stop_others(vtd, ext: str) -> None:
    flood = b"".join(
        json.dumps(request("data.get", {"extensionId": ext, "id": "i1"}, n)).encode() + b"\n"
        for n in range(5000)
    )
    async with (
        await vtd.connect() as greedy,
        await vtd.connect() as polite,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(greedy.send_raw, flood)  # blocks once the daemon stops reading
        with anyio.fail_after(10):
            for n in range(100):
                await polite.call("data.set", extensionId=ext, id="i1", key="k", value=n)
                assert await polite.call("data.getKey", extensionId=ext, id="i1", key="k") == {
                    "k": n
                }
        tg.cancel_scope.cancel()


async def test_a_client_that_reads_late_gets_every_large_answer_whole(vtd, ext: str) -> None:
    # Answers far larger than the socket's buffers, all queued before the
    # client reads one: they leave in pieces as it drains, in full and intact.
    big = "x" * 200_000
    async with await vtd.connect() as writer:
        await writer.call("data.set", extensionId=ext, id="i1", key="big", value=big)
    count = 300  # more than the 128 in flight: the daemon stops reading, then resumes
    async with await vtd.connect() as late:
        await late.send_raw(
            b"".join(
                json.dumps(
                    request("data.getKey", {"extensionId": ext, "id": "i1", "key": "big"}, n)
                ).encode()
                + b"\n"
                for n in range(count)
            )
        )
        with anyio.fail_after(30):
            replies = [await late.receive() for _ in range(count)]
    assert sorted(reply["id"] for reply in replies) == list(range(count))
    assert all(reply["result"] == {"big": big} for reply in replies)


async def test_connections_past_the_limit_get_busy_and_are_closed(config: Config) -> None:
    async with anyio.create_task_group() as tg:
        running = await start_daemon(replace(config, max_connections=4), tg)
        held = [await running.connect() for _ in range(4)]
        for wire in held:
            assert await wire.call("ping") == {"message": "Pong!"}
        async with await running.connect() as extra:
            with anyio.fail_after(10):
                reply = await extra.receive()
                assert reply["id"] is None
                assert reply["error"]["code"] == -32003
                with pytest.raises(anyio.EndOfStream):
                    await extra.stream.receive()
                # The daemon has said all it will say, but still takes what a
                # client sends a moment late: the client reads the refusal
                # above, instead of failing on a broken pipe.
                await extra.stream.send(json.dumps(request("ping", {}, 1)).encode() + b"\n")
        await held[0].aclose()
        with anyio.fail_after(10):
            while True:  # the freed place is taken by the next connection
                async with await running.connect() as again:
                    await again.send(request("ping", {}, 1))
                    reply = await again.receive()
                if "result" in reply:
                    break
        for wire in held[1:]:
            await wire.aclose()
        running.daemon.stop()


def _flood_unread_then_hang_up(path: Path, request: bytes, clients: int) -> None:
    """Have ``clients`` connections send ``request`` until vtd stops reading, then hang up."""
    flood = request * 20_000

    def one() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.settimeout(0.5)
            view, sent = memoryview(flood), 0
            try:
                while sent < len(flood):
                    sent += sock.send(view[sent : sent + 65536])
            except TimeoutError:
                pass  # vtd stopped reading: its answers unread fill the buffers

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def test_clients_that_hang_up_with_requests_unread_cause_no_error(
    vtd, ext: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Answering the lines a chunk held found the client gone, which used to
    # fail the socket's callback (an InvalidStateError logged by asyncio).
    caplog.set_level(logging.ERROR)
    async with await vtd.connect() as wire:
        await wire.call("data.set", extensionId=ext, id="i1", key="big", value="v" * 4000)
        read = json.dumps(request("data.get", {"extensionId": ext, "id": "i1"}, 1)) + "\n"
        await anyio.to_thread.run_sync(
            _flood_unread_then_hang_up, vtd.socket_path, read.encode(), 100
        )
        assert await wire.call("ping") == {"message": "Pong!"}
    assert [record.getMessage() for record in caplog.records] == []


async def test_writes_a_gone_client_left_unread_are_not_applied(config: Config) -> None:
    # The client pipelines 200 writes and hangs up before vtd reads any: the
    # daemon shares this test's event loop, and the blocking send and close
    # never yield to it. vtd reads them all in one chunk but takes only as
    # many as it has in-flight slots (4); answering those finds the client
    # gone. At most the one write already waiting for a slot may follow;
    # the rest were never taken, so they must not be applied (without the
    # check, the slots freed by the failed answers let the reader take
    # three more: 8 in all).
    limits = replace(config, max_in_flight=4)
    writes = b"".join(
        json.dumps(
            request("data.set", {"extensionId": "ext", "id": "i1", "key": f"k{n}", "value": n}, n)
        ).encode()
        + b"\n"
        for n in range(200)
    )
    async with anyio.create_task_group() as tg:
        running = await start_daemon(limits, tg)
        async with await running.connect() as wire:
            await wire.seed("ext", "c1", "i1")
            server = running.daemon.server
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
                gone.connect(str(running.socket_path))
                await eventually(lambda: server.connection_count == 2, message="vtd accepted it")
                gone.sendall(writes)
            await eventually(lambda: server.connection_count == 1, message="vtd is done with it")
            applied = await wire.call("data.get", extensionId="ext", id="i1")
        running.daemon.stop()
    assert 4 <= len(applied) <= 5, len(applied)


async def test_refused_connections_are_logged_at_most_once_a_minute(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vtd.server")

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records if "refused:" in r.getMessage()]

    async def refused() -> None:
        async with await running.connect() as extra:
            with anyio.fail_after(10):
                assert (await extra.receive())["error"]["code"] == -32003

    async with anyio.create_task_group() as tg:
        running = await start_daemon(replace(config, max_connections=1), tg)
        async with await running.connect() as held:
            assert await held.call("ping") == {"message": "Pong!"}
            for _ in range(5):
                await refused()
            assert len(refusals()) == 1
            assert "more like this" not in refusals()[0]
        running.daemon.stop()


def test_an_occasional_warning_counts_what_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vtd.test")
    warning = OccasionalWarning(logging.getLogger("vtd.test"), interval=60.0)
    for n in range(5):
        warning.warn("refused #%d", n)
    assert [r.getMessage() for r in caplog.records] == ["refused #0"]
    warning.interval = 0.0  # the minute is over
    warning.warn("refused #%d", 5)
    assert [r.getMessage() for r in caplog.records] == [
        "refused #0",
        "refused #5 (4 more like this since the last such warning)",
    ]
    warning.warn("refused #%d", 6)
    assert caplog.records[-1].getMessage() == "refused #6"


async def test_a_stalled_message_is_dropped_after_the_line_timeout(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with anyio.create_task_group() as tg:
        running = await start_daemon(replace(config, line_timeout=0.5), tg)
        async with await running.connect() as stalled, await running.connect() as idle:
            await stalled.send_raw(b'{"jsonrpc": "2.0", "method": "pi')
            with (
                anyio.fail_after(10),
                pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)),
            ):
                await stalled.stream.receive()
            # An idle connection with no message started is not timed out.
            assert await idle.call("ping") == {"message": "Pong!"}
        running.daemon.stop()
    assert "not finished within 0.5s" in caplog.text
    assert "connection failed" not in caplog.text


async def test_a_message_in_slow_pieces_within_the_timeout_is_served(config: Config) -> None:
    async with anyio.create_task_group() as tg:
        running = await start_daemon(replace(config, line_timeout=5), tg)
        async with await running.connect() as slow:
            line = json.dumps(request("ping", {"message": "slow"}, 1)).encode() + b"\n"
            for piece in (line[:10], line[10:20], line[20:]):
                await slow.send_raw(piece)
                await anyio.sleep(0.05)  # a slow client, not synchronisation
            with anyio.fail_after(10):
                assert (await slow.receive())["result"] == {"message": "Pong! slow"}
        running.daemon.stop()


async def test_many_concurrent_connections_are_all_served(vtd) -> None:
    async def one(n: int) -> None:
        async with await vtd.connect() as wire:
            assert await wire.call("ping", message=str(n)) == {"message": f"Pong! {n}"}

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(one, n)


async def test_whole_lines_then_a_partial_one_in_one_chunk_are_all_served(vtd, ext: str) -> None:
    # Whole lines are taken as they arrive; the partial one waits for its end.
    lines = [
        json.dumps(
            request("data.set", {"extensionId": ext, "id": "i1", "key": "k", "value": 1}, 1)
        ),
        json.dumps(request("data.getKey", {"extensionId": ext, "id": "i1", "key": "k"}, 2)),
        json.dumps(request("ping", {"message": "tail"}, 3)),
    ]
    text = ("\n".join(lines) + "\n").encode()
    cut = len(text) - 15  # inside the third line
    async with await vtd.connect() as wire:
        await wire.send_raw(text[:cut])
        with anyio.fail_after(10):
            first = [await wire.receive(), await wire.receive()]
        assert {reply["id"]: reply["result"] for reply in first} == {
            1: {"success": True, "key": "k", "value": 1},
            2: {"k": 1},
        }
        await wire.send_raw(text[cut:])
        with anyio.fail_after(10):
            assert (await wire.receive())["result"] == {"message": "Pong! tail"}
