"""Answers on their way to one client: sent at once when the socket takes them.

Any part of a connection may ``add`` a line. The lines added during one
pass of the event loop (the answers to a chunk of pipelined reads, or to
the writes of one group commit) then leave together, in one non-blocking
``send``: an answer costs no task switch, and the kernel's socket buffers
hold few, full messages instead of many small ones. Whatever the socket
does not take stays queued, in order, for the outbox's writer task
(``run``), which sends it as the socket drains.

Each line carries the in-flight slots of the requests it answers; they are
released only once the line has been sent in full. A client that stops
reading its answers therefore keeps its slots, and the connection stops
reading its requests: the kernel's socket buffers push back on it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable

import anyio

log = logging.getLogger(__name__)

SEND_SIZE = 1 << 20


class Outbox:
    """The sending side of one connection's socket."""

    def __init__(
        self,
        sock: socket.socket,
        release: Callable[[int], None],
        on_broken: Callable[[], None],
        name: str,
    ) -> None:
        self._sock = sock
        self._release = release
        self._on_broken = on_broken
        self._name = name
        self._queue: deque[tuple[bytes | memoryview, int]] = deque()
        # A plain callback of the event loop, not a task: the daemon runs on
        # asyncio, and a callback costs a fraction of a task switch.
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._draining = False  # the writer waits for the socket: leave sending to it
        self._over = False  # nothing more will be sent: the client or the writer task is gone
        self._closing = False
        self._wake = anyio.Event()

    def add(self, line: bytes, slots: int) -> None:
        """Send ``line`` soon, with the others added now; it frees ``slots`` once sent."""
        if self._over:
            self._release(slots)  # nobody will send it
            return
        self._queue.append((line, slots))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def will_flush(self) -> None:
        """Promise a ``flush()`` in this same callback: lines added until then schedule none.

        Scheduling a flush for the end of the pass, only for it to find
        nothing left, cost about 2 µs per answer on a busy machine.
        """
        self._flush_scheduled = True

    def flush(self) -> None:
        """Send what the socket takes now; leave the rest to the writer task."""
        self._flush_scheduled = False
        if self._draining or not self._queue:
            return
        self._send_some()
        if self._queue and not self._over:
            self._draining = True
            self._wake.set()

    def close(self) -> None:
        """Take no more lines; the writer task ends once the queued ones are sent."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """The writer task: send queued lines as the socket drains, until closed."""
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                self.flush()
                while self._queue and not self._over:
                    await anyio.wait_writable(self._sock)
                    self._send_some()
                self._draining = False
                if self._closing and not self._queue:
                    return
        finally:
            self._over = True

    def _send_some(self) -> None:
        queue = self._queue
        first = queue[0][0]
        if len(queue) == 1 or len(first) >= SEND_SIZE:
            data = first  # a large line goes alone, not copied into a join
        else:
            parts: list[bytes | memoryview] = []
            size = 0
            for line, _ in queue:
                parts.append(line)
                size += len(line)
                if size >= SEND_SIZE:
                    break
            data = b"".join(parts)
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            return
        except OSError as exc:
            log.debug("%s: client stopped reading answers (%s)", self._name, exc)
            self._break()
            return
        slots = 0
        while sent:
            line, line_slots = queue[0]
            if sent < len(line):
                # A view, not a slice: a large answer sent in many pieces
                # must not be copied again for each.
                queue[0] = (memoryview(line)[sent:], line_slots)
                break
            queue.popleft()
            sent -= len(line)
            slots += line_slots
        if slots:
            self._release(slots)

    def _break(self) -> None:
        self._over = True
        slots = sum(line_slots for _, line_slots in self._queue)
        self._queue.clear()
        self._release(slots)
        self._on_broken()
