"""One client connection: newline framing, concurrency, backpressure, one writer.

The reader splits the byte stream into lines and starts a task for each
message, so pipelined requests run concurrently and answers go back as they
finish. Every request holds one of ``max_in_flight`` slots until its answer
is written to the socket; when all are taken the reader stops reading, and
the kernel's socket buffer pushes back on the client. So a connection holds
at most ``max_in_flight`` requests and answers in memory, whatever it sends.
A single writer task owns the socket's sending side, so any part of the
daemon may queue a line for the client (answers now, notifications later)
without interleaving.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup

from vtd import rpc
from vtd.codes import INTERNAL_ERROR, INVALID_REQUEST
from vtd.methods import RequestContext
from vtd.ordering import RequestOrder
from vtd.registry import Registry

log = logging.getLogger(__name__)

READ_SIZE = 65536
WRITE_COALESCE = 1 << 20
PARSE_IN_THREAD = 1 << 20
JSON_WHITESPACE = b" \t\r"
LINGER = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits, as set on the command line."""

    max_message: int = 16 * 1024 * 1024
    max_in_flight: int = 128
    line_timeout: float = 30.0


class MessageTooLarge(Exception):
    """A line grew past the message size limit before its newline."""


class LineTimeout(Exception):
    """A message was started but not finished within the line timeout."""


def _blank(line: bytes) -> bool:
    """Only JSON whitespace: a blank line, ignored (a vertical tab is not blank)."""
    return not line or (line[0] in JSON_WHITESPACE and not line.strip(JSON_WHITESPACE))


class Connection:
    """Serves one client until it hangs up, misbehaves, or the daemon stops."""

    def __init__(
        self,
        stream: SocketStream,
        registry: Registry,
        methods: rpc.Methods,
        limits: Limits,
        name: str,
    ) -> None:
        self.name = name
        self._stream = stream
        self._registry = registry
        self._methods = methods
        self._limits = limits
        self._order = RequestOrder()
        self._slots = anyio.Semaphore(limits.max_in_flight)
        self._reading = anyio.CancelScope()
        try:
            self._fileno: int | None = stream.extra(SocketAttribute.raw_socket).fileno()
        except anyio.TypedAttributeLookupError:
            self._fileno = None
        # Answers hold their request's slot until written, so at most
        # max_in_flight of them wait here; the rest of the room is for lines
        # that answer a whole message (parse errors), which hold none.
        self._out_send, self._out_receive = anyio.create_memory_object_stream[tuple[bytes, int]](
            2 * limits.max_in_flight
        )

    def stop_reading(self) -> None:
        """Read no more requests; answer those in flight, then close (graceful stop)."""
        self._reading.cancel()

    async def serve(self) -> None:
        """Run the connection to its end; the socket is closed on return."""
        async with self._stream:
            gentle = True
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write_lines)
                try:
                    async with anyio.create_task_group() as handlers:
                        with self._reading:
                            await self._read_requests(handlers)
                except* LineTimeout:
                    log.info(
                        "%s: message not finished within %ss; closing",
                        self.name,
                        self._limits.line_timeout,
                    )
                    gentle = False
                    tg.cancel_scope.cancel()
                finally:
                    self._out_send.close()
            if gentle:
                await self._close_gently()

    async def _close_gently(self) -> None:
        # Closing a Unix socket with unread requests in it makes the client's
        # next read fail with ECONNRESET instead of ending cleanly. So say we
        # are done (EOF), and discard what the client still sends, briefly.
        with anyio.move_on_after(LINGER):
            try:
                await self._stream.send_eof()
                while True:
                    await self._stream.receive(READ_SIZE)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                pass

    async def _read_requests(self, handlers: TaskGroup) -> None:
        try:
            async for line in self._lines():
                if _blank(line):
                    continue
                if len(line) > PARSE_IN_THREAD:
                    message = await anyio.to_thread.run_sync(self._decode, line)
                else:
                    message = self._decode(line)
                if message.error is not None:
                    await self._queue_line(rpc.encode(message.error))
                    continue
                for _ in message.requests:
                    try:
                        self._slots.acquire_nowait()  # no checkpoint on the hot path
                    except anyio.WouldBlock:
                        await self._slots.acquire()
                numbers = [self._order.issue() for _ in message.requests]
                handlers.start_soon(self._handle, message, numbers)
        except MessageTooLarge:
            await self._queue_line(
                rpc.encode(
                    rpc.error_response(
                        INVALID_REQUEST,
                        f"Invalid request: the message is longer than "
                        f"{self._limits.max_message} bytes; closing the connection",
                        {"reason": "message too large", "limit": self._limits.max_message},
                    )
                )
            )
        except (anyio.BrokenResourceError, anyio.EndOfStream, ConnectionError):
            pass

    async def _receive(self) -> bytes:
        # Wait for data on the integer fd first: on Python 3.11, asyncio's
        # add_reader() with a socket object (what the stream's own wait uses)
        # builds the socket's repr (getsockname, getpeername) for a KeyError on
        # every wait. Waiting on the fd took pings on 16 connections from
        # 8,500/s to 10,200/s.
        if self._fileno is not None:
            await anyio.wait_readable(self._fileno)
        return await self._stream.receive(READ_SIZE)

    def _decode(self, line: bytes) -> rpc.Message:
        return rpc.decode(line, max_batch=self._limits.max_in_flight)

    async def _lines(self) -> AsyncIterator[bytes]:
        buffer = bytearray()
        scanned = 0
        started: float | None = None
        limit = self._limits.max_message
        while True:
            start = 0
            while (newline := buffer.find(b"\n", scanned)) >= 0:
                if newline - start > limit:
                    raise MessageTooLarge
                yield bytes(buffer[start:newline])
                start = scanned = newline + 1
            if start:
                del buffer[:start]
                started = None
            scanned = len(buffer)
            if len(buffer) > limit:
                raise MessageTooLarge
            if not buffer:
                started = None
                chunk = await self._receive()
            else:
                now = anyio.current_time()
                if started is None:
                    started = now
                remaining = started + self._limits.line_timeout - now
                with anyio.move_on_after(remaining) as waiting:
                    chunk = await self._receive()
                if waiting.cancelled_caught:
                    raise LineTimeout
            buffer += chunk

    async def _handle(self, message: rpc.Message, numbers: list[int]) -> None:
        slots = len(numbers)
        try:
            if message.batch:
                answers: list[rpc.Response | None] = [None] * len(numbers)

                async def answer_one(index: int) -> None:
                    answers[index] = await self._answer(message.requests[index], numbers[index])

                async with anyio.create_task_group() as tg:
                    for index in range(len(numbers)):
                        tg.start_soon(answer_one, index)
                batch = [a for a in answers if a is not None]
                line = self._encode(batch) if batch else None
            else:
                response = await self._answer(message.requests[0], numbers[0])
                line = None if response is None else self._encode(response)
            if line is not None and await self._queue_line(line, slots):
                slots = 0  # the writer frees them once the answer is written
        finally:
            for _ in range(slots):
                self._slots.release()

    async def _answer(self, request: object, number: int) -> rpc.Response | None:
        context = RequestContext(self._registry, self._order, number)
        try:
            return await rpc.answer(request, self._methods, context)
        finally:
            # Requests that never reach their ordering point (bad envelope,
            # unknown method, bad params) let later ones past here.
            self._order.release(number)

    def _encode(self, response: rpc.Response | list[rpc.Response]) -> bytes:
        try:
            return rpc.encode(response)
        except Exception:
            log.exception("%s: cannot encode an answer", self.name)
            return rpc.encode(
                rpc.error_response(
                    INTERNAL_ERROR,
                    "Internal error; the daemon logged the details",
                    {"reason": "internal"},
                )
            )

    async def _queue_line(self, line: bytes, slots: int = 0) -> bool:
        """Hand a line to the writer, which frees ``slots`` once it is written.

        Answer whether it was queued: if the writer is gone, the client hung
        up and the line has nowhere to go.
        """
        try:
            try:
                self._out_send.send_nowait((line, slots))  # no checkpoint on the hot path
            except anyio.WouldBlock:
                await self._out_send.send((line, slots))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    async def _write_lines(self) -> None:
        async with self._out_receive:
            try:
                async for line, slots in self._out_receive:
                    parts = [line]
                    size = len(line)
                    while size < WRITE_COALESCE:
                        try:
                            more, more_slots = self._out_receive.receive_nowait()
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                        parts.append(more)
                        size += len(more)
                        slots += more_slots
                    await self._stream.send(b"".join(parts))
                    for _ in range(slots):
                        self._slots.release()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                log.debug("%s: client stopped reading answers", self.name)
                self._reading.cancel()
