"""Keeping one connection's requests in the order they were read.

The protocol promises that writes one connection sends for one extension
are applied in the order the daemon read them, even when pipelined or
batched, though each request is handled in a task of its own. The reader
numbers every request as it reads it (``issue``); a request that must keep
its place waits for ``turn(n)`` (every earlier request has passed its
ordering point) before it looks up its extension and queues its write, and
then ``release(n)``. Requests with nothing to order release at once. Only
the few synchronous steps around queueing are serialized, never the
commits, so pipelined writes still share group commits.

Reads keep their place too: a read waits for the connection's last earlier
write to the same extension (``last_write``), so a pipelined or batched
read sees the writes sent before it on that connection.
"""

from __future__ import annotations

from typing import Any

import anyio

from vtd.actor import PendingWrite


class RequestOrder:
    """Turn-taking for the requests of one connection, by read order."""

    __slots__ = ("_changed", "_issued", "_next", "_released", "last_write")

    def __init__(self) -> None:
        self.last_write: dict[str, PendingWrite[Any]] = {}
        """Per extension id, the latest write this connection queued."""
        self._issued = 0
        self._next = 0
        self._released: set[int] = set()
        self._changed: anyio.Event | None = None  # made only when someone waits

    def issue(self) -> int:
        """The next request's number, in read order."""
        number = self._issued
        self._issued += 1
        return number

    def is_next(self, number: int) -> bool:
        """Whether every request read before ``number`` has been released."""
        return self._next == number

    async def turn(self, number: int) -> None:
        """Wait until every request read before ``number`` has been released."""
        while self._next < number:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def release(self, number: int) -> None:
        """Let requests after ``number`` go past; releasing twice is harmless."""
        if number < self._next or number in self._released:
            return
        self._released.add(number)
        if number != self._next:
            return
        while self._next in self._released:
            self._released.remove(self._next)
            self._next += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None
