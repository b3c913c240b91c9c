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
after a crash), it raises ``MustWait``. Nor may a query run long there:
SQLite interrupts it once it has run for ``NOW_MAX_SECONDS``, or once it
meets a value, or makes a string (an instance's data joined into one
object), longer than ``NOW_MAX_VALUE_BYTES`` (SQLite refuses a value
before loading it), and ``run_now`` raises ``MustWait`` for those too, so
no instance or value, however large, stalls every other client. ``run``
runs a query on the reader's own ``Worker`` thread, for reads that may be
large or must wait; reads that queue up there run back to back and are
answered together.

While the writer is idle (it says so: ``writer_idle``), nothing can change
the file, so the event loop's reads share one read transaction instead of
each taking and releasing SQLite's WAL read lock (two ``fcntl`` calls): in
three alternating pairs of runs, point reads on 16 connections went 5-21%
faster. The writer ends that snapshot (``writer_busy``) before each batch,
so every read after a commit sees it, and so that no snapshot held on
keeps SQLite from starting the WAL over. A reader the writer never told
about keeps no snapshot.

The same thread checkpoints the WAL when the writer asks (``checkpoint_soon``),
with a connection of its own: the writer's commits go on meanwhile.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vtd import schema
from vtd.errors import MustWait
from vtd.worker import Worker

log = logging.getLogger(__name__)

T = TypeVar("T")

NOW_MAX_SECONDS = 0.001
"""About how long a read may hold the event loop's thread, every other client waiting.

Point reads take microseconds; past this, the read is done again on the
reader's thread, which costs it a hand-off (tens of microseconds) but
nobody else anything. An instance of 200 values of 60 KB held the loop
for 50 ms before this limit.
"""

NOW_MAX_VALUE_BYTES = 64 * 1024
"""The longest value a read on the event loop's thread may load, in bytes.

Loading a value is one step of SQLite's virtual machine, which the time
limit cannot cut short: one of 15 MB held the loop for 20-50 ms. Up to
this length, reading on the loop is far cheaper than a hand-off (with a
limit of 1 KiB, reads of a 4 KB value on 16 connections fell from
20,000-25,000/s to 6,500/s).
"""

_STEPS_PER_CHECK = 100
"""How often SQLite asks whether a read on the loop is out of time: about every
8 rows, each asking about 0.2 µs."""

_WOULD_WAIT = ("SQLITE_BUSY", "SQLITE_INTERRUPT", "SQLITE_TOOBIG")
"""Errors that only say the read must wait (or run on the thread): the
connection is still sound."""


def _would_wait(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith(_WOULD_WAIT)


class _Connection:
    """One connection to the file, opened when first used and afresh after a failure.

    With ``max_seconds``, SQLite interrupts a ``use`` that runs longer; with
    ``max_value_bytes``, it refuses to load a longer value.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_seconds: float | None = None,
        max_value_bytes: int | None = None,
        **options: Any,
    ) -> None:
        self._path = path
        self._options = options
        self._max_seconds = max_seconds
        self._max_value_bytes = max_value_bytes
        self._conn: sqlite3.Connection | None = None
        self._deadline = math.inf

    def use(self, work: Callable[[sqlite3.Connection], T], *, hold: bool = False) -> T:
        """Run ``work`` on the connection; a connection that failed may be broken: close it.

        With ``hold``, ``work`` runs in a read transaction left open after it,
        for the next ``use`` to share, until ``end_transaction``.
        """
        if self._conn is None:
            self._conn = schema.connect(self._path, **self._options)
            if self._max_seconds is not None:
                self._conn.set_progress_handler(self._out_of_time, _STEPS_PER_CHECK)
            if self._max_value_bytes is not None:
                self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self._max_value_bytes)
        if self._max_seconds is not None:
            self._deadline = time.perf_counter() + self._max_seconds
        try:
            if hold and not self._conn.in_transaction:
                self._conn.execute("BEGIN")
            return work(self._conn)
        except sqlite3.Error as exc:
            if _would_wait(exc):
                # An interrupted read may leave its transaction open (its
                # ROLLBACK can be interrupted too); the next read must not
                # reuse its old snapshot.
                self.end_transaction()
            else:
                self.close()
            raise

    def end_transaction(self) -> None:
        """End the read transaction left open, if any: the next ``use`` takes a new snapshot."""
        if self._conn is not None and self._conn.in_transaction:
            self._deadline = math.inf  # the ROLLBACK must not be interrupted
            self._conn.execute("ROLLBACK")

    def _out_of_time(self) -> bool:
        return time.perf_counter() > self._deadline

    def close(self) -> None:
        """Close the connection, if it is open."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Reader:
    """Runs read queries against one database file, at once or on a dedicated thread."""

    def __init__(self, name: str, path: Path) -> None:
        self.path = path
        self._worker = Worker(f"reader {name}")
        self._reads = _Connection(path, read_only=True)  # the worker thread's
        self._reads_now = _Connection(  # the loop's
            path,
            max_seconds=NOW_MAX_SECONDS,
            max_value_bytes=NOW_MAX_VALUE_BYTES,
            read_only=True,
            busy_timeout_ms=0,
        )
        self._checkpoints = _Connection(path)  # the worker thread's, writable
        self._checkpoint_queued = False
        self._share_snapshot = False  # set while the writer says it is idle

    async def run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on the worker's connection and return its result."""
        return await self._worker.run(lambda: self._reads.use(query))

    def run_now(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on this thread, or raise ``MustWait`` if it must wait or runs long."""
        try:
            return self._reads_now.use(query, hold=self._share_snapshot)
        except sqlite3.Error as exc:
            if _would_wait(exc):
                raise MustWait from exc
            raise

    def writer_idle(self) -> None:
        """The file's writer has nothing in progress: ``run_now`` reads may share a snapshot."""
        self._share_snapshot = True

    def writer_busy(self) -> None:
        """The writer is about to change the file: end the shared snapshot, and share none."""
        self._share_snapshot = False
        try:
            self._reads_now.end_transaction()
        except sqlite3.Error as exc:
            log.warning("ending a read snapshot of %s failed: %s", self.path.name, exc)
            self._reads_now.close()

    def checkpoint_soon(self) -> None:
        """Queue a passive WAL checkpoint, unless one is queued already; do not wait."""
        if not self._checkpoint_queued:
            self._checkpoint_queued = True
            self._worker.run_soon(self._checkpoint)

    def close(self) -> None:
        """Close the connections once the queued reads are done, and end the thread."""
        self._reads_now.close()
        self._worker.run_soon(self._close_worker_connections)
        self._worker.stop()

    def _checkpoint(self) -> None:
        self._checkpoint_queued = False  # a request from now on gets a checkpoint of its own
        try:
            self._checkpoints.use(lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)"))
        except sqlite3.Error as exc:
            # Nothing is lost: the WAL keeps the data, and the next request retries.
            log.warning("checkpoint of %s failed: %s", self.path.name, exc)

    def _close_worker_connections(self) -> None:
        self._reads.close()
        self._checkpoints.close()
