"""The read side of one database, beside its writer.

WAL mode lets a reader run while the writer commits. Each read sees a
snapshot taken after every commit whose response has already been sent, so
callers always read their writes (the storage functions that need several
queries hold one read transaction around them).
Reads run on the reader's own ``Worker`` thread with one read-only
connection; reads that queue up run back to back and are answered together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from vtd import schema
from vtd.worker import Worker

T = TypeVar("T")


class Reader:
    """Runs read queries against one database file on a dedicated thread."""

    def __init__(self, name: str, path: Path) -> None:
        self.path = path
        self._worker = Worker(f"reader {name}")
        self._conn: sqlite3.Connection | None = None

    async def run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on the read connection and return its result."""
        return await self._worker.run(lambda: self._read(query))

    def close(self) -> None:
        """Close the connection once the queued reads are done, and end the thread."""
        self._worker.run_soon(self._close)
        self._worker.stop()

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = schema.connect(self.path, read_only=True)
        try:
            return query(self._conn)
        except sqlite3.Error:
            self._close()  # a connection that failed may be broken: open afresh next time
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
