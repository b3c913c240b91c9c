"""Which extensions are registered, and their open databases.

Registrations are kept in ``registry.sqlite3`` in the data dir, written by
their own ``WriterActor``, so they survive restarts. Each registered
extension has one ``Extension``: a writer actor and a reader over
``extensions/<id>.sqlite3``. The path comes only from an id that matched
the protocol's pattern, so no id can reach outside the data dir.

``register`` and ``deregister`` change the in-memory state at once (so
requests that follow them on the same connection see the change) and hand
back a coroutine function that waits for the change to be durable. A change
that cannot be recorded (a full disk) fails its caller, and once no later
change of that extension is still queued, the in-memory state goes back to
what is recorded: what a restart would find.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
from anyio.abc import TaskGroup

from vtd import openfiles, schema
from vtd.actor import ActorClosed, PendingWrite, WriterActor
from vtd.errors import (
    Busy,
    MustWait,
    NotRegistered,
    OutOfThreads,
    StartupError,
    StorageUnavailable,
)
from vtd.readers import Reader
from vtd.store import utc_now

log = logging.getLogger(__name__)

T = TypeVar("T")

EXTENSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

Finish = Callable[[], Awaitable[None]]


_OUT_OF_THREADS = (
    "vtd cannot start another thread ({} running; each registered extension has two): "
    "raise the limit on tasks (TasksMax= in vtd.service, or ulimit -u before starting vtd) "
    "or deregister extensions no longer used, then retry"
)


def _nothing(conn: sqlite3.Connection) -> None:
    """A write job that writes nothing: it makes the writer retry opening its file."""


class Extension:
    """One registered extension's database: its writer actor and its reader."""

    def __init__(self, extension_id: str, path: Path, *, after: anyio.Event | None) -> None:
        self.id = extension_id
        self.path = path
        self.reader = Reader(extension_id, path)
        try:
            self.writer = WriterActor(
                extension_id,
                path,
                schema.migrate,
                after=after,
                checkpoint=self.reader.checkpoint_soon,
                writing=self.reader.writer_busy,
                idle=self.reader.writer_idle,
            )
        except OutOfThreads:
            self.reader.close()
            raise

    async def submit(self, job: Callable[[sqlite3.Connection], T]) -> PendingWrite[T]:
        """Queue a write job in this extension's order; await ``result()`` for its outcome."""
        try:
            return await self.writer.submit(job)
        except ActorClosed:
            raise NotRegistered(self.id) from None

    def submit_now(self, job: Callable[[sqlite3.Connection], T]) -> PendingWrite[T]:
        """As ``submit``, at once; ``MustWait`` if the writer's queue is full."""
        try:
            return self.writer.submit_nowait(job)
        except anyio.WouldBlock:
            raise MustWait from None
        except ActorClosed:
            raise NotRegistered(self.id) from None

    async def open(self) -> None:
        """Wait until the file is open; if opening it failed, try again, and raise the fault.

        The cause of an earlier failure (a full disk, say) may be gone, so
        the writer gets another try rather than the caller the old fault.
        """
        await self.writer.opened.wait()
        if not self.writer.is_open:
            await (await self.submit(_nothing)).settled()
            if not self.writer.is_open and self.writer.fault is not None:
                raise self.writer.fault

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read query against a snapshot that includes every acknowledged write."""
        await self.open()
        try:
            return await self.reader.run(query)
        except sqlite3.Error as exc:
            fault = self._storage_fault(exc)
            if fault is None:
                raise  # not the storage: a bug
            raise fault from exc

    def read_now(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """As ``read``, on this thread and at once; ``MustWait`` if that cannot be."""
        if not self.writer.is_open:
            raise MustWait  # the file is not open yet, or must be retried
        try:
            return self.reader.run_now(query)
        except sqlite3.Error as exc:
            fault = self._storage_fault(exc)
            if fault is None:
                raise  # not the storage: a bug
            raise fault from exc

    def _storage_fault(self, exc: sqlite3.Error) -> StorageUnavailable | None:
        reason = schema.describe_storage_fault(exc)
        return None if reason is None else StorageUnavailable(self.id, reason)


def _create_registry_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE extensions (id TEXT PRIMARY KEY, registered_at TEXT NOT NULL)")


def _migrate_registry(conn: sqlite3.Connection) -> None:
    schema.migrate(conn, [_create_registry_v1])


def _record(extension_id: str, conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO extensions (id, registered_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (extension_id, utc_now()),
    )


def _forget(extension_id: str, conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM extensions WHERE id = ?", (extension_id,))


def _registered_ids(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT id FROM extensions ORDER BY id")]


async def _recorded(extension_id: str, pending: PendingWrite[None], change: str) -> None:
    """Wait for a change of registration to be recorded; if it cannot be, say so for its id."""
    try:
        await pending.result()
    except StorageUnavailable as exc:
        raise StorageUnavailable(
            extension_id, f"the {change} could not be recorded: {exc.reason}"
        ) from exc


async def _supervised(writer: WriterActor) -> None:
    """Run a writer; if it fails, log it rather than take the daemon down."""
    try:
        await writer.run()
    except Exception:
        log.exception("%s: the writer stopped unexpectedly", writer.name)


class Registry:
    """The set of registered extensions, persisted, with their live databases."""

    def __init__(self, data_dir: Path, task_group: TaskGroup) -> None:
        self.data_dir = data_dir
        self.extensions_dir = data_dir / "extensions"
        self._tg = task_group
        self._writer = WriterActor("registry", data_dir / "registry.sqlite3", _migrate_registry)
        self._live: dict[str, Extension] = {}
        self._closing: dict[str, Extension] = {}
        self._recorded: set[str] = set()
        """The ids registered in the registry's file, as its commits settle."""
        self._unsettled: dict[str, int] = {}
        """Per extension id, how many registers and deregisters are not yet settled."""
        self._closing_all = False

    def get(self, extension_id: str) -> Extension:
        """The live extension, or ``NotRegistered``."""
        try:
            return self._live[extension_id]
        except KeyError:
            raise NotRegistered(extension_id) from None

    def ids(self) -> list[str]:
        """Registered extension ids, sorted by code point."""
        return sorted(self._live)

    def writers(self) -> list[WriterActor]:
        """Every running writer actor, the registry's own included (for health checks)."""
        return [self._writer, *(ext.writer for ext in self._live.values())]

    async def register(self, extension_id: str) -> Finish:
        """Register now; the returned function waits until it is durable and the file is open."""
        extension = self._live.get(extension_id)
        if extension is None:
            try:
                openfiles.refuse_if_short(extension_id)  # before anything is recorded
                extension = self._start(extension_id)
            except StorageUnavailable as exc:
                log.error("%s: not registered: %s", extension_id, exc.reason)
                raise
        pending = await self._persist(extension_id, registered=True)

        async def finish() -> None:
            await _recorded(extension_id, pending, "registration")
            try:
                await extension.open()
            except NotRegistered:
                # A request after this one deregistered it, as it may: this
                # registration held until then, and its file opened unless
                # the writer says otherwise.
                if extension.writer.fault is not None:
                    raise extension.writer.fault from None

        return finish

    async def deregister(self, extension_id: str) -> Finish:
        """Deregister now; the returned function waits until it is durable and the file closed.

        The extension's queued writes are still applied before its file closes.
        """
        extension = self._stop(extension_id)
        pending = await self._persist(extension_id, registered=False)

        async def finish() -> None:
            await _recorded(extension_id, pending, "deregistration")
            if extension is not None:
                await extension.writer.stopped.wait()

        return finish

    async def _persist(self, extension_id: str, *, registered: bool) -> PendingWrite[None]:
        """Queue recording that ``extension_id`` is (or is no longer) registered."""
        job = partial(_record if registered else _forget, extension_id)
        try:
            pending = await self._writer.submit(job)
        except ActorClosed:
            raise Busy("the daemon is shutting down") from None
        self._unsettled[extension_id] = self._unsettled.get(extension_id, 0) + 1
        pending.add_done_callback(partial(self._settled, extension_id, pending, registered))
        return pending

    def _settled(self, extension_id: str, pending: PendingWrite[None], registered: bool) -> None:
        """Called in commit order: track what is recorded; after a failure, go back to it."""
        unsettled = self._unsettled.pop(extension_id) - 1
        if unsettled:
            self._unsettled[extension_id] = unsettled
        try:
            pending.outcome()
        except Exception:
            if unsettled:
                return  # a later change of this extension decides
            if self._closing_all:
                return  # the daemon is stopping: a restart reads what is recorded
            if extension_id in self._recorded and extension_id not in self._live:
                log.warning(
                    "%s: the deregistration was not recorded; still registered", extension_id
                )
                try:
                    self._start(extension_id)
                except StorageUnavailable as exc:  # a restart opens it
                    log.error("%s: cannot reopen it: %s", extension_id, exc.reason)
            elif extension_id not in self._recorded and extension_id in self._live:
                log.warning("%s: the registration was not recorded; not registered", extension_id)
                self._stop(extension_id)
        else:
            if registered:
                self._recorded.add(extension_id)
            else:
                self._recorded.discard(extension_id)

    def _stop(self, extension_id: str) -> Extension | None:
        """Take the extension out of the live set; its writer finishes its queue, then stops."""
        extension = self._live.pop(extension_id, None)
        if extension is not None:
            self._closing[extension_id] = extension
            extension.writer.close()
        return extension

    def _start(self, extension_id: str) -> Extension:
        """Make the extension live; ``StorageUnavailable`` if its threads cannot start."""
        if not EXTENSION_ID.fullmatch(extension_id):
            raise ValueError(f"invalid extension id {extension_id!r}")
        previous = self._closing.get(extension_id)
        try:
            extension = Extension(
                extension_id,
                self.extensions_dir / f"{extension_id}.sqlite3",
                after=None if previous is None else previous.writer.stopped,
            )
        except OutOfThreads as exc:
            reason = _OUT_OF_THREADS.format(threading.active_count())
            raise StorageUnavailable(extension_id, reason) from exc
        self._live[extension_id] = extension
        self._tg.start_soon(self._run_extension, extension, name=f"writer {extension_id}")
        return extension

    async def _run_extension(self, extension: Extension) -> None:
        try:
            await _supervised(extension.writer)
        finally:
            extension.reader.close()
            if self._closing.get(extension.id) is extension:
                del self._closing[extension.id]

    async def _load(self) -> None:
        self._tg.start_soon(_supervised, self._writer, name="writer registry")
        await self._writer.opened.wait()
        if self._writer.fault is not None:
            raise StartupError(
                f"cannot open the registry {self._writer.path}: {self._writer.fault.reason}"
            )
        self.extensions_dir.mkdir(mode=0o700, exist_ok=True)
        pending = await self._writer.submit(_registered_ids)
        self._recorded = set(await pending.result())
        for extension_id in sorted(self._recorded):
            try:
                self._start(extension_id)
            except StorageUnavailable as exc:
                raise StartupError(
                    f"cannot open the {len(self._recorded)} registered extensions: {exc.reason}"
                ) from None
        for extension in list(self._live.values()):
            await extension.writer.opened.wait()
        if openfiles.short(openfiles.SPARE):
            log.warning(
                "%d extensions are registered, and %s", len(self._live), openfiles.describe()
            )
        log.debug("opened %d registered extensions", len(self._live))

    async def _close(self) -> None:
        self._closing_all = True
        for extension in self._live.values():
            extension.writer.close()
        for extension in [*self._live.values(), *self._closing.values()]:
            await extension.writer.stopped.wait()
        self._writer.close()
        await self._writer.stopped.wait()


@asynccontextmanager
async def open_registry(data_dir: Path) -> AsyncIterator[Registry]:
    """Open the registry and every registered extension; on exit, drain and close them all."""
    async with anyio.create_task_group() as tg:
        registry = Registry(data_dir, tg)
        try:
            await registry._load()
            yield registry
        finally:
            with anyio.CancelScope(shield=True):
                await registry._close()
