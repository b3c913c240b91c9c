"""Opening an extension's SQLite file and keeping its schema current.

Every extension database is a plain SQLite file in WAL mode with
``synchronous=FULL``, so a committed transaction survives a crash of the
daemon or the machine. The schema version lives in ``PRAGMA user_version``;
``MIGRATIONS[n]`` upgrades a file from version ``n`` to ``n + 1``.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from pathlib import Path

from vtd import openfiles

SCHEMA_V1 = """
CREATE TABLE characters (
    pk         INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE instances (
    pk           INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    character_pk INTEGER NOT NULL REFERENCES characters(pk) ON DELETE CASCADE,
    name         TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX instances_by_character ON instances(character_pk, pk);
CREATE TABLE data (
    pk          INTEGER PRIMARY KEY,
    instance_pk INTEGER NOT NULL REFERENCES instances(pk) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    UNIQUE (instance_pk, key)
);
"""

Migration = Callable[[sqlite3.Connection], None]


def _create_v1(conn: sqlite3.Connection) -> None:
    # Not executescript(): it would commit the migration's open transaction.
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)


MIGRATIONS: list[Migration] = [_create_v1]
"""Migration ``n`` takes a database from ``user_version`` n to n + 1."""


class SchemaTooNew(Exception):
    """The file was written by a newer vtd whose schema this one cannot read."""


def connect(
    path: Path, *, read_only: bool = False, busy_timeout_ms: int = 10_000
) -> sqlite3.Connection:
    """Open ``path`` with the settings every vtd connection needs.

    Connections run in autocommit mode (transactions are explicit) and may be
    used from any one thread at a time. A connection waits up to
    ``busy_timeout_ms`` for a lock before it fails with ``SQLITE_BUSY``.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        else:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, migrations: list[Migration] = MIGRATIONS) -> None:
    """Bring the schema up to ``len(migrations)``, one committed step at a time."""
    latest = len(migrations)
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > latest:
        raise SchemaTooNew(
            f"schema version {version} is newer than this vtd understands ({latest})"
        )
    for step in range(version, latest):
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations[step](conn)
            conn.execute(f"PRAGMA user_version = {step + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


_STORAGE_FAULTS = {
    "SQLITE_FULL": "the disk is full; free some space and retry",
    "SQLITE_IOERR": "an I/O error occurred (a full disk, a file size limit or a failing "
    "disk); check the daemon's log and retry",
    "SQLITE_CORRUPT": "the database file is damaged; restore it from a backup, or move it "
    "aside to start the extension empty",
    "SQLITE_NOTADB": "the file is not a SQLite database (damaged or overwritten); restore "
    "it from a backup, or move it aside to start the extension empty",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_READONLY": "the database file or its directory is read-only",
    "SQLITE_PERM": "permission denied on the database file",
    "SQLITE_BUSY": "the database file is locked by another process",
    "SQLITE_LOCKED": "the database file is locked",
    "SQLITE_PROTOCOL": "the database file's lock protocol failed",
}


def describe_storage_fault(exc: BaseException) -> str | None:
    """Say what is wrong with the storage, if ``exc`` is a storage fault at all.

    Faults of the disk or the file (full, I/O error, damage, locks) get a
    sentence a person can act on; any other error is a bug and gets ``None``.
    """
    if isinstance(exc, SchemaTooNew):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return openfiles.describe()
        return f"{exc.strerror or exc} ({exc.filename or 'data dir'})"
    if not isinstance(exc, sqlite3.Error):
        return None
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_CANTOPEN") and openfiles.short(openfiles.FOR_A_DATABASE):
        # SQLite does not say why it could not open a file; this is the usual why.
        return openfiles.describe()
    for prefix, reason in _STORAGE_FAULTS.items():
        if name.startswith(prefix):
            return f"{reason} ({exc})"
    return None
