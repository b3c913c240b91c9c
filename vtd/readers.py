"""Read connections for one database, beside its writer.

WAL mode lets readers run while the writer commits. Each read runs in one
read transaction, so a multi-query answer (a character with its instances
and their data) comes from one snapshot, and it starts after every commit
whose response has already been sent, so callers always read their writes.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio

from vtd import schema

T = TypeVar("T")

MAX_IDLE = 8


class ReadPool:
    """A small pool of read-only connections to one database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._idle: deque[sqlite3.Connection] = deque()
        self._closed = False

    async def run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` in a read transaction in a worker thread."""
        return await anyio.to_thread.run_sync(self._run, query)

    def _run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = schema.connect(self.path, read_only=True)
        try:
            conn.execute("BEGIN")
            try:
                return query(conn)
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            conn.close()  # a connection that failed may be broken: never reuse it
            conn = None
            raise
        finally:
            if conn is not None:
                self._release(conn)

    def _release(self, conn: sqlite3.Connection) -> None:
        if self._closed or len(self._idle) >= MAX_IDLE:
            conn.close()
        else:
            self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections; connections in use close when their read ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
