"""Waiting for a socket to have data, with one registration for its lifetime.

``anyio.wait_readable`` registers the socket with the event loop's selector
and removes it again on every wait: two ``epoll_ctl`` calls and the
selector's bookkeeping, about a sixth of the event loop's time under load.
A connection waits for every request it reads, so ``Readable`` registers
once and stays registered while its reader keeps coming back to wait. It
steps aside only when data arrives with no one waiting (the selector would
otherwise report the same data on every pass), and registers again at the
next wait.

It uses asyncio directly, like ``vtd.worker``: the daemon always runs on
asyncio.
"""

from __future__ import annotations

import asyncio
import socket


class Readable:
    """Readiness of one socket for reading; ``close()`` when done with it."""

    def __init__(self, sock: socket.socket) -> None:
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._registered = False

    async def wait(self) -> None:
        """Return once the socket has data (or an end, or an error) to read."""
        if not self._registered:
            self._loop.add_reader(self._fd, self._ready)
            self._registered = True
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Unregister the socket (before it is closed)."""
        if self._registered:
            self._loop.remove_reader(self._fd)
            self._registered = False

    def _ready(self) -> None:
        waiter = self._waiter
        if waiter is None:
            self.close()  # nobody is waiting: stop the selector reporting it
        elif not waiter.done():
            waiter.set_result(None)
