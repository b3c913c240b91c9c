"""The single writer of one SQLite database.

A ``WriterActor`` is a task that owns a database's only write connection.
Callers ``submit`` a job, a function of the connection; the actor applies
jobs in the order they were submitted, on its own ``Worker`` thread so the
event loop never waits on the disk. Jobs that queue up while a commit is in progress
are applied together in one transaction and made durable by one fsync
(group commit); each job runs under its own savepoint, so one caller's
failure never undoes or fails another's. A batch smaller than the one before
waits one turn of the event loop for the jobs of writers that were just
answered and are already sending again.

Given a ``checkpoint`` function, the actor never checkpoints the WAL in its
own commits (a checkpoint copies pages into the database file and fsyncs
it: tens of milliseconds that every write queued behind it would wait).
It calls ``checkpoint`` instead, to have it done beside the writer, once
enough rows have changed since the last time. A checkpoint beside a writer
that never pauses never catches up, though, and SQLite starts the WAL over
only once every frame in it has been copied: so when the WAL outgrows
``WAL_LIMIT`` the actor finishes the checkpoint itself between two
batches (little is left to copy by then), and the next commit starts the
WAL over and trims the file back to ``WAL_LIMIT``. Once a writer has been
idle for ``IDLE_BEFORE_TRIM`` seconds after a commit (``trim_idle_wals``
asks it), it checkpoints the whole WAL and truncates it to nothing, so that
an extension busy once does not keep up to ``WAL_LIMIT`` on disk for good.

Given ``writing`` and ``idle``, the actor says when it is about to change
the file and when it has nothing in progress, so that readers may share a
snapshot in between (``vtd.readers``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from vtd import schema
from vtd.errors import StorageUnavailable
from vtd.worker import Worker

log = logging.getLogger(__name__)

T = TypeVar("T")

Job = Callable[[sqlite3.Connection], T]

MAX_BATCH = 512
QUEUE_SIZE = 1024
CHECKPOINT_CHANGES = 1000
"""Rows changed between two checkpoints beside the writer.

Commits wait behind a checkpoint's flush of the database file on the same
disk. With every write changing its row, checkpoints this far apart let
more writes through, one and sixteen connections alike, than every 100
rows did (docs/performance.md).
"""
WAL_LIMIT = 16 * 1024 * 1024
"""WAL bytes past which the writer finishes a checkpoint itself; the size it is trimmed to."""
IDLE_BEFORE_TRIM = 30.0
"""Seconds without a batch, after a commit, before the writer truncates its WAL."""


class ActorClosed(Exception):
    """The actor no longer takes jobs (its database was closed)."""


class NotApplied(Exception):
    """A job finished without its batch ever reaching the database: nothing was written."""


_UNSETTLED = NotApplied("the write was not applied")


class PendingWrite(Generic[T]):
    """One submitted job; ``result()`` waits for its commit and answers its outcome.

    Instead of a task waiting on ``result()``, a callback may be told when the
    job is done (``add_done_callback``), then read ``outcome()``.
    """

    __slots__ = ("_callbacks", "_done", "_error", "_value", "job")

    def __init__(self, job: Job[T]) -> None:
        self.job: Job[T] | None = job
        self._done: anyio.Event | bool = False  # an event only once somebody waits
        self._value: Any = None
        # Until the writer settles it, a job's outcome is failure: no caller is
        # ever told that a write it never applied succeeded.
        self._error: BaseException | None = _UNSETTLED
        self._callbacks: list[Callable[[], None]] = []

    def _settle(self, value: Any, error: BaseException | None) -> None:
        self._value, self._error = value, error

    def _finish(self) -> None:
        if self.done:
            return
        # Let go of the job (and the values it holds) once it is done: a
        # connection remembers its last write to each extension.
        self.job = None
        if isinstance(self._done, anyio.Event):
            self._done.set()
        self._done = True
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("a callback of a finished write failed")
        self._callbacks.clear()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the event loop's thread once the job is done."""
        if self.done:
            callback()
        else:
            self._callbacks.append(callback)

    def outcome(self) -> T:
        """The outcome of a job that is done: its value, or its exception raised."""
        assert self.done, "outcome() of a write that is not done"
        if self._error is _UNSETTLED:
            raise NotApplied("the write was not applied")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]

    @property
    def done(self) -> bool:
        """Whether the job is committed or failed."""
        return self._done is True

    async def settled(self) -> None:
        """Wait until the job is committed or failed, without raising its error."""
        if self._done is True:
            return
        if self._done is False:
            self._done = anyio.Event()
        await self._done.wait()

    async def result(self) -> T:
        """The job's return value once durably committed, or its exception."""
        await self.settled()
        return self.outcome()


class WriterActor:
    """Applies jobs to one database file, in order, with group commit.

    ``opened`` is set once the first attempt to open the file is over;
    ``fault`` then says why the database is unusable, or is ``None``. A failed
    open is retried before each later batch, so a fault that goes away (a full
    disk that gets space) heals without a restart. ``checkpoint``, if given,
    is called on the event loop's thread to ask for a WAL checkpoint done
    elsewhere; it must not wait. ``writing`` and ``idle`` are called on that
    thread too: before the actor may change the file (a batch, or closing
    it), and once it has nothing in progress (its file open, or a batch
    done, before the batch's callers are told). ``busy_since`` is the
    ``time.monotonic()`` at which the work in progress on the writer's
    thread began, or ``None``, for the watchdog.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        migrate: Callable[[sqlite3.Connection], None],
        *,
        after: anyio.Event | None = None,
        checkpoint: Callable[[], None] | None = None,
        writing: Callable[[], None] = lambda: None,
        idle: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.path = path
        self.opened = anyio.Event()
        self.stopped = anyio.Event()
        self.fault: StorageUnavailable | None = None
        self.busy_since: float | None = None
        self._migrate = migrate
        self._after = after
        self._checkpoint = checkpoint
        self._writing = writing
        self._idle = idle
        self._changes_at_checkpoint = 0
        self._untrimmed = False  # something may be in the WAL since it was last truncated
        self._last_batch_at = 0.0
        self._last_batch_size = 0
        self._conn: sqlite3.Connection | None = None
        self._wal = path.with_name(path.name + "-wal")
        # None in the queue asks the actor to truncate its WAL if it is still idle.
        self._send: MemoryObjectSendStream[PendingWrite[Any] | None]
        self._receive: MemoryObjectReceiveStream[PendingWrite[Any] | None]
        self._send, self._receive = anyio.create_memory_object_stream[PendingWrite[Any] | None](
            QUEUE_SIZE
        )
        # Started here, not in run(), so that a refused thread fails the caller
        # that made the actor, before anything waits on it.
        self._worker = Worker(f"writer {name}")

    @property
    def is_open(self) -> bool:
        """Whether the write connection is open (the file was opened and migrated)."""
        return self._conn is not None

    async def submit(self, job: Job[T]) -> PendingWrite[T]:
        """Queue ``job`` behind every job submitted before it; wait only if the queue is full."""
        pending = PendingWrite(job)
        try:
            try:
                self._send.send_nowait(pending)  # no checkpoint on the hot path
            except anyio.WouldBlock:
                await self._send.send(pending)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorClosed(self.name) from None
        return pending

    def submit_nowait(self, job: Job[T]) -> PendingWrite[T]:
        """As ``submit``; raise ``anyio.WouldBlock`` if the queue is full."""
        pending = PendingWrite(job)
        try:
            self._send.send_nowait(pending)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorClosed(self.name) from None
        return pending

    def close(self) -> None:
        """Take no more jobs; the actor finishes the queued ones, then stops."""
        self._send.close()

    def trim_if_idle(self) -> None:
        """Ask for the WAL to be truncated if the writer committed, then stayed idle long enough."""
        if self._trim_due():
            # A full queue means busy after all, a closed one closing: no trim now.
            with suppress(anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._send.send_nowait(None)

    async def run(self) -> None:
        """Serve jobs until closed, then close the connection. Run this in a task group."""
        worker = self._worker
        try:
            if self._after is not None:
                await self._after.wait()
            with anyio.CancelScope(shield=True):
                await worker.run(self._try_open)
            self._idle()
            self.opened.set()
            async with self._receive:
                async for first in self._receive:
                    if first is None:
                        if self._trim_due():  # still: no batch came in between
                            await self._trim_wal(worker)
                        continue
                    batch = [first]
                    self._gather(batch)
                    self._writing()
                    try:
                        if len(batch) < self._last_batch_size:
                            # The writers of the last batch were answered a
                            # moment ago and may be sending again: let the event
                            # loop read what has arrived before sealing a smaller
                            # batch (W at 16 connections: a median +16% over 17
                            # alternating pairs of runs on a busy machine).
                            await anyio.lowlevel.checkpoint()
                            self._gather(batch)
                        self._last_batch_size = len(batch)
                        await self._busy(
                            worker, partial(self._apply, batch), then=partial(self._done, batch)
                        )
                    finally:
                        if not batch[0].done:
                            self._done(batch)  # the worker could not
                    if self._wal_outgrown():
                        await self._busy(worker, self._finish_checkpoint)
                    self._checkpoint_if_due()
        finally:
            self.opened.set()
            self._writing()  # closing the file may checkpoint it and remove the WAL
            with anyio.CancelScope(shield=True):
                await worker.run(self._close_connection)
            worker.stop()
            self.stopped.set()

    def _gather(self, batch: list[PendingWrite[Any]]) -> None:
        """Add the jobs queued now to ``batch``, up to ``MAX_BATCH``."""
        while len(batch) < MAX_BATCH:
            try:
                pending = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            if pending is not None:
                batch.append(pending)

    def _done(self, batch: list[PendingWrite[Any]]) -> None:
        self._untrimmed = True
        self._last_batch_at = time.monotonic()
        self._idle()  # before the callers are told: the reads they send next see the commit
        for pending in batch:
            pending._finish()

    async def _busy(
        self, worker: Worker, function: Callable[[], None], then: Callable[[], None] | None = None
    ) -> None:
        """Run ``function`` to its end on the writer's thread, counted as busy by the watchdog."""
        self.busy_since = time.monotonic()
        try:
            with anyio.CancelScope(shield=True):
                await worker.run(function, then=then)
        finally:
            self.busy_since = None

    def _trim_due(self) -> bool:
        """Whether the WAL may hold something and the writer has been idle long enough."""
        return self._untrimmed and time.monotonic() - self._last_batch_at >= IDLE_BEFORE_TRIM

    async def _trim_wal(self, worker: Worker) -> None:
        self._writing()  # readers let go of their shared snapshot, which would hold the WAL
        try:
            await self._busy(worker, self._truncate_wal)
        finally:
            self._idle()

    def _checkpoint_if_due(self) -> None:
        # The worker is idle between batches: the connection may be read here.
        if self._checkpoint is None or self._conn is None:
            return
        changes = self._conn.total_changes
        if changes - self._changes_at_checkpoint >= CHECKPOINT_CHANGES:
            self._changes_at_checkpoint = changes
            self._checkpoint()

    def _wal_outgrown(self) -> bool:
        if self._checkpoint is None or self._conn is None:
            return False  # SQLite checkpoints in the commits, or nothing is open
        try:
            return self._wal.stat().st_size > WAL_LIMIT
        except OSError:
            return False

    # The methods below run in a worker thread, one at a time.

    def _finish_checkpoint(self) -> None:
        assert self._conn is not None
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("%s: checkpoint failed: %s", self.name, exc)

    def _truncate_wal(self) -> None:
        conn = self._conn
        if conn is None:
            self._untrimmed = False  # until the file opens again
            return
        # A reader in the middle of a query keeps the WAL from being truncated:
        # do not wait for it (the writer's queue would), try again next time.
        (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            (busy, _, _) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("%s: truncating the WAL failed: %s", self.name, exc)
            self._untrimmed = False  # not again every sweep: after the next commit
        else:
            if busy:
                log.debug("%s: a reader holds the WAL; truncating it later", self.name)
            self._untrimmed = bool(busy)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")

    def _try_open(self) -> None:
        try:
            conn = schema.connect(self.path)
            try:
                if self._checkpoint is not None:
                    conn.execute("PRAGMA wal_autocheckpoint = 0")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
        except Exception as exc:
            self._record_fault(exc)
        else:
            self._conn = conn
            self._changes_at_checkpoint = 0
            self._untrimmed = True  # a WAL left by a crash is trimmed too
            if self.fault is not None:
                log.info("%s: storage is usable again (%s)", self.name, self.path)
            self.fault = None

    def _record_fault(self, exc: Exception) -> None:
        reason = schema.describe_storage_fault(exc)
        if reason is None:
            log.exception("%s: unexpected error on %s", self.name, self.path)
            reason = "an internal error occurred; see the daemon log"
        else:
            log.error("%s: storage unavailable at %s: %s", self.name, self.path, reason)
            reason = f"{reason} (file {self.path.name})"
        self.fault = StorageUnavailable(self.name, reason)

    def _apply(self, batch: list[PendingWrite[Any]]) -> None:
        try:
            self._apply_batch(batch)
        except Exception as exc:
            log.exception("%s: writing a batch failed", self.name)
            for pending in batch:
                pending._settle(None, exc)

    def _apply_batch(self, batch: list[PendingWrite[Any]]) -> None:
        if self._conn is None:
            self._try_open()
        conn = self._conn
        if conn is None:
            assert self.fault is not None
            for pending in batch:
                pending._settle(None, self.fault)
            return
        try:
            # Most batches fail nowhere: apply them without a savepoint per job
            # (two statements fewer each). If any job fails, undo the batch and
            # apply it again with savepoints, so that job fails alone.
            if not self._commit(conn, batch, isolated=False):
                conn.execute("ROLLBACK")
                self._commit(conn, batch, isolated=True)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.warning("%s: rollback after a failed commit failed too", self.name)
            self._record_fault(exc)
            for pending in batch:
                pending._settle(None, self.fault)
        else:
            if self.fault is not None:
                log.warning("%s: writes succeed again (%s)", self.name, self.path)
            self.fault = None

    def _commit(
        self, conn: sqlite3.Connection, batch: list[PendingWrite[Any]], *, isolated: bool
    ) -> bool:
        """Apply and commit the batch; without ``isolated``, stop at the first failing job.

        Answer whether it committed. Storage faults propagate: they fail the batch.
        """
        conn.execute("BEGIN IMMEDIATE")
        for pending in batch:
            if isolated:
                conn.execute("SAVEPOINT job")
            try:
                assert pending.job is not None, "a job runs before it is finished"
                value = pending.job(conn)
            except Exception as exc:
                if isinstance(exc, sqlite3.Error) and schema.describe_storage_fault(exc):
                    raise  # the disk or the file is at fault: the whole batch fails
                if not isolated:
                    return False
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                pending._settle(None, exc)
            else:
                if isolated:
                    conn.execute("RELEASE job")
                pending._settle(value, None)
        conn.execute("COMMIT")
        return True

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


async def trim_idle_wals(writers: Callable[[], list[WriterActor]]) -> None:
    """Have each writer idle for ``IDLE_BEFORE_TRIM`` truncate its WAL; runs until cancelled."""
    while True:
        await anyio.sleep(IDLE_BEFORE_TRIM / 2)
        for writer in writers():
            writer.trim_if_idle()
