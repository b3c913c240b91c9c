"""Receiving from a socket with one selector registration for its lifetime.

``anyio.wait_readable`` registers the socket with the event loop's selector
and removes it again on every wait: two ``epoll_ctl`` calls and the
selector's bookkeeping, about a sixth of the event loop's time under load.
A connection receives for every request it reads, so ``Receiver`` registers
once and stays registered while its reader keeps coming back for more.

The receiving itself happens in the selector's callback, as asyncio's own
transports do it: a readiness report that turns out stale (the selector may
report data the reader has just taken) then costs one failed ``recv``,
not a wake-up of the reader for nothing. Data that arrives while nobody is
receiving is kept (one chunk at most) and the socket steps aside until the
next ``receive``, so a connection that stops reading stops taking data.

A ``consume`` function, if given, sees each chunk that arrives while a
``receive`` waits, before the waiting task is woken: it handles what it can
there and then, and hands back the rest, which ``receive`` returns. If it
takes everything, the task sleeps on: a connection's usual request costs
no task switch at all.

It uses asyncio directly, like ``vtd.worker``: the daemon always runs on
asyncio.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


class Receiver:
    """The receiving side of one non-blocking socket; ``close()`` when done with it."""

    def __init__(
        self, sock: socket.socket, size: int, consume: Callable[[bytes], bytes] | None = None
    ) -> None:
        self._sock = sock
        self._consume = consume
        self._fd = sock.fileno()
        self._size = size
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[bytes] | None = None
        self._kept: bytes | None = None
        self._failed: OSError | None = None
        self._registered = False

    async def receive(self) -> bytes:
        """The next chunk of data, ``b""`` at the end; ``OSError`` if the socket failed."""
        if self._kept is not None:
            chunk, self._kept = self._kept, None
            return chunk
        if self._failed is not None:
            raise self._failed
        if not self._registered:
            self._loop.add_reader(self._fd, self._ready)
            self._registered = True
        self._waiter = self._loop.create_future()
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Unregister the socket (before it is closed)."""
        if self._registered:
            self._loop.remove_reader(self._fd)
            self._registered = False

    def _ready(self) -> None:
        try:
            chunk = self._sock.recv(self._size)
        except BlockingIOError:
            return  # a stale report: the data was taken already
        except OSError as exc:
            self.close()
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(exc)
            else:
                self._failed = exc
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if chunk and self._consume is not None:
                try:
                    chunk = self._consume(chunk)
                except Exception as exc:  # a bug: let the waiting task fail with it
                    waiter.set_exception(exc)
                    return
                if not chunk:
                    return  # all taken: the waiting task sleeps on
                if waiter.done():
                    # Answering those lines found the client gone, which
                    # cancelled the waiting task: nobody reads the rest.
                    return
            waiter.set_result(chunk)
            if not chunk:
                self.close()  # the end: the selector would report it forever
        else:
            # Nobody is receiving (or the chunk before this one is on its way
            # to the reader): keep this one, and take no more until asked.
            self._kept = chunk
            self.close()
