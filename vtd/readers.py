"""The read side of one database, beside its writer.

WAL mode lets a reader run while the writer commits, and a read never waits
for a write lock. Each read sees a snapshot taken after every commit whose
response has already been sent, so callers always read their writes (the
storage functions that need several queries hold one read transaction
around them).

There are two ways to read. ``run_now`` runs a small query on the event
loop's thread, at once: a point read costs tens of microseconds, far less
than handing it to a thread and back. Its connection never waits for a
lock; should SQLite ask it to (``SQLITE_BUSY``, rare in WAL mode: recovery
after a crash), it raises ``MustWait``. ``run`` runs a query on the
reader's own ``Worker`` thread, for reads that may be large or must wait;
reads that queue up there run back to back and are answered together.

The same thread checkpoints the WAL when the writer asks (``checkpoint_soon``),
with a connection of its own: the writer's commits go on meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from vtd import schema
from vtd.errors import MustWait
from vtd.worker import Worker

log = logging.getLogger(__name__)

T = TypeVar("T")


class Reader:
    """Runs read queries against one database file, at once or on a dedicated thread."""

    def __init__(self, name: str, path: Path) -> None:
        self.path = path
        self._worker = Worker(f"reader {name}")
        self._conn: sqlite3.Connection | None = None  # the worker thread's
        self._conn_now: sqlite3.Connection | None = None  # the event loop thread's
        self._conn_checkpoint: sqlite3.Connection | None = None  # the worker's, writable
        self._checkpoint_queued = False

    async def run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on the worker's connection and return its result."""
        return await self._worker.run(lambda: self._read(query))

    def run_now(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on this thread, or raise ``MustWait`` if SQLite would have to wait."""
        if self._conn_now is None:
            self._conn_now = schema.connect(self.path, read_only=True, busy_timeout_ms=0)
        try:
            return query(self._conn_now)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                raise MustWait from exc
            self._close_now()
            raise
        except sqlite3.Error:
            self._close_now()  # a connection that failed may be broken: open afresh next time
            raise

    def checkpoint_soon(self) -> None:
        """Queue a passive WAL checkpoint, unless one is queued already; do not wait."""
        if not self._checkpoint_queued:
            self._checkpoint_queued = True
            self._worker.run_soon(self._checkpoint)

    def close(self) -> None:
        """Close the connections once the queued reads are done, and end the thread."""
        self._close_now()
        self._worker.run_soon(self._close)
        self._worker.stop()

    def _checkpoint(self) -> None:
        self._checkpoint_queued = False  # a request from now on gets a checkpoint of its own
        try:
            if self._conn_checkpoint is None:
                self._conn_checkpoint = schema.connect(self.path)
            self._conn_checkpoint.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            # Nothing is lost: the WAL keeps the data, and the next request retries.
            log.warning("checkpoint of %s failed: %s", self.path.name, exc)
            self._close_checkpoint()

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
        self._close_checkpoint()

    def _close_checkpoint(self) -> None:
        if self._conn_checkpoint is not None:
            self._conn_checkpoint.close()
            self._conn_checkpoint = None

    def _close_now(self) -> None:
        if self._conn_now is not None:
            self._conn_now.close()
            self._conn_now = None
