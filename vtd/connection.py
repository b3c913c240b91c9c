"""One client connection: newline framing, concurrency, backpressure.

The reader splits the byte stream into lines; whole lines that arrive while
it waits between lines are taken in the ``Receiver``'s callback itself,
without waking the reader task. A request whose turn has come is handled
right there: a point read or a
ping is answered at once; a write is handed to its extension's writer, and
answered by a callback when it commits. Any other request (a batch, a
listing, a read behind an uncommitted write, a registration) gets a task
of its own. Either way pipelined requests run concurrently, and answers go
back as they finish. Answers leave through the connection's ``Outbox``, which
sends those that are ready together.

Every request holds one of ``max_in_flight`` slots until its answer is
written to the socket; when all are taken the reader stops reading, and
the kernel's socket buffer pushes back on the client. So a connection holds
at most ``max_in_flight`` requests and answers in memory, whatever it sends.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup

from vtd import rpc
from vtd.codes import INTERNAL_ERROR, INVALID_REQUEST
from vtd.methods import Deferred, RequestContext
from vtd.ordering import RequestOrder
from vtd.outbox import Outbox
from vtd.receiver import Receiver
from vtd.registry import Registry

log = logging.getLogger(__name__)

READ_SIZE = 65536
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


class UnfinishedMessage(Exception):
    """The client ended its stream in the middle of a message (no newline after it)."""


class LineTimeout(Exception):
    """A message was started but not finished within the line timeout."""


async def finish_gently(sock: socket.socket) -> None:
    """Say we are done (EOF), then discard what the client still sends, for up to ``LINGER`` s.

    Closing a Unix socket at once would make the client's next send fail
    with a broken pipe, and its next read with ECONNRESET, before it reads
    the answers (or the refusal) already sent to it. The caller closes the
    socket afterwards.
    """
    with anyio.move_on_after(LINGER):
        try:
            sock.shutdown(socket.SHUT_WR)
            while True:
                await anyio.wait_readable(sock)
                if not sock.recv(READ_SIZE):
                    return
        except OSError:
            pass


def _blank(line: bytes) -> bool:
    """Only JSON whitespace: a blank line, ignored (a vertical tab is not blank)."""
    return not line or (line[0] in JSON_WHITESPACE and not line.strip(JSON_WHITESPACE))


class Connection:
    """Serves one client until it hangs up, misbehaves, or the daemon stops."""

    def __init__(
        self,
        stream: SocketStream,
        registry: Registry,
        methods: rpc.MethodTables,
        limits: Limits,
        name: str,
    ) -> None:
        self.name = name
        self._stream = stream
        # The socket itself, non-blocking: reads and sends go straight to it,
        # waiting only when it is not ready (the stream would add a checkpoint,
        # a full trip through the event loop, to every receive and send).
        self._sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
        self._registry = registry
        self._methods = methods
        self._limits = limits
        self._order = RequestOrder()
        self._slots = anyio.Semaphore(limits.max_in_flight)
        self._reading = anyio.CancelScope()
        self._outbox = Outbox(self._sock, self._release, self._reading.cancel, name)
        self._receiver = Receiver(self._sock, READ_SIZE, consume=self._take_whole_lines)
        self._handlers: TaskGroup | None = None
        self._between_lines = False  # the reader waits for data, with no partial line
        self._deferred = 0  # writes handed on whose answers have not come yet
        self._deferred_done: anyio.Event | None = None

    def stop_reading(self) -> None:
        """Read no more requests; answer those in flight, then close (graceful stop)."""
        self._reading.cancel()

    async def serve(self) -> None:
        """Run the connection to its end; the socket is closed on return."""
        async with self._stream:
            gentle = True
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._outbox.run)
                try:
                    async with anyio.create_task_group() as handlers:
                        with self._reading:
                            try:
                                await self._read_requests(handlers)
                            finally:
                                self._receiver.close()
                        await self._deferred_answers()
                except* LineTimeout:
                    log.info(
                        "%s: message not finished within %ss; closing",
                        self.name,
                        self._limits.line_timeout,
                    )
                    gentle = False
                    tg.cancel_scope.cancel()
                finally:
                    self._outbox.flush()
                    self._outbox.close()
            if gentle:
                await finish_gently(self._sock)

    def _release(self, slots: int) -> None:
        for _ in range(slots):
            self._slots.release()

    async def _read_requests(self, handlers: TaskGroup) -> None:
        self._handlers = handlers
        try:
            async for line in self._lines():
                if self._reading.cancel_called:
                    # The client is gone (or the daemon stops): requests it
                    # sent but nobody took yet are not in flight. Without
                    # this, a chunk read ahead kept being answered, to nobody.
                    break
                if _blank(line):
                    continue
                if len(line) > PARSE_IN_THREAD:
                    message = await anyio.to_thread.run_sync(self._decode, line)
                else:
                    message = self._decode(line)
                if message.error is not None:
                    self._outbox.add(rpc.encode(message.error), 0)
                    continue
                for _ in message.requests:
                    try:
                        self._slots.acquire_nowait()  # no checkpoint on the hot path
                    except anyio.WouldBlock:
                        await self._slots.acquire()
                self._dispatch(message, handlers)
        except MessageTooLarge:
            self._refuse_stream(
                f"the message is longer than {self._limits.max_message} bytes; "
                "closing the connection",
                {"reason": "message too large", "limit": self._limits.max_message},
            )
        except UnfinishedMessage:
            self._refuse_stream(
                "the stream ended in the middle of a message; end every message with a newline",
                {"reason": "no newline after the last message"},
            )
        except (anyio.EndOfStream, OSError):
            pass

    def _refuse_stream(self, problem: str, data: dict[str, object]) -> None:
        """Answer a fault of the byte stream itself, which names no request: ``"id": null``."""
        error = rpc.error_response(INVALID_REQUEST, f"Invalid request: {problem}", data)
        self._outbox.add(rpc.encode(error), 0)

    def _take_whole_lines(self, chunk: bytes) -> bytes:
        """Handle the whole lines a chunk starts with, if that needs no waiting; return the rest.

        Called by the receiver while the reader task waits for data. Lines
        are taken only between lines (no partial line is buffered), and only
        while each is small and finds its slots free; the first line that
        is not, and all after it, go back to the reader task.
        """
        handlers = self._handlers
        if not self._between_lines or handlers is None or self._reading.cancel_called:
            return chunk
        limit = min(self._limits.max_message, PARSE_IN_THREAD)
        start = 0
        self._outbox.will_flush()
        try:
            while (newline := chunk.find(b"\n", start)) >= 0:
                if newline - start > limit or not self._take_line(chunk[start:newline], handlers):
                    break
                start = newline + 1
        finally:
            self._outbox.flush()
        return chunk[start:]

    def _take_line(self, line: bytes, handlers: TaskGroup) -> bool:
        """Handle one small line at once; ``False`` (nothing done) if it must wait for slots."""
        if _blank(line):
            return True
        if not self._slots.value:
            return False  # no slot free for any request: leave it undecoded to the reader task
        message = self._decode(line)
        if message.error is not None:
            self._outbox.add(rpc.encode(message.error), 0)
            return True
        if self._slots.value < len(message.requests):
            return False
        for _ in message.requests:
            self._slots.acquire_nowait()
        self._dispatch(message, handlers)
        return True

    def _dispatch(self, message: rpc.Message, handlers: TaskGroup) -> None:
        """Number the message's requests in read order; answer now, or start their task."""
        numbers = [self._order.issue() for _ in message.requests]
        if message.batch or not self._answer_now(message.requests[0], numbers[0]):
            handlers.start_soon(self._handle, message, numbers)

    def _answer_now(self, request: object, number: int) -> bool:
        """Answer a request that needs no waiting, here and now; say whether it was."""
        if not self._order.is_next(number):
            return False  # it must keep its place behind requests still in progress
        context = RequestContext(self._registry, self._order, number)
        response = rpc.answer_now(request, self._methods, context)
        if response is rpc.LATER:
            return False
        self._order.release(number)
        if response is rpc.PENDING:
            deferred = context.deferred
            assert deferred is not None, "an answer is pending without a write to wait for"
            self._deferred += 1
            deferred.pending.add_done_callback(lambda: self._answer_deferred(request, deferred))
        elif response is None:
            self._slots.release()
        else:
            self._outbox.add(self._encode(response), 1)
        return True

    def _answer_deferred(self, request: object, deferred: Deferred) -> None:
        self._deferred -= 1
        # After the last write this connection waits for, its answers leave
        # at once, with the others of the same commit, rather than after the
        # next pass of the event loop.
        last = not self._deferred
        response = rpc.complete(request, deferred.result())
        if response is None:
            self._slots.release()
        else:
            line = self._encode(response)
            if last:
                self._outbox.will_flush()  # just below
            self._outbox.add(line, 1)
        if last:
            self._outbox.flush()
            if self._deferred_done is not None:
                self._deferred_done.set()

    async def _deferred_answers(self) -> None:
        """Wait until every write handed on has been answered."""
        if self._deferred:
            self._deferred_done = anyio.Event()
            await self._deferred_done.wait()

    async def _receive(self) -> bytes:
        self._outbox.flush()  # the answers ready so far leave before the reader waits
        chunk = await self._receiver.receive()
        if not chunk:
            raise anyio.EndOfStream
        return chunk

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
                self._between_lines = True
                try:
                    chunk = await self._receive()
                finally:
                    self._between_lines = False
            else:
                now = anyio.current_time()
                if started is None:
                    started = now
                remaining = started + self._limits.line_timeout - now
                try:
                    with anyio.move_on_after(remaining) as waiting:
                        chunk = await self._receive()
                except anyio.EndOfStream:
                    if _blank(bytes(buffer)):
                        raise
                    raise UnfinishedMessage from None
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
            if line is not None:
                self._outbox.add(line, slots)
                slots = 0  # the outbox frees them once the answer is written
        finally:
            self._release(slots)

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
