"""Copying a vtd data dir while the daemon runs: ``vtctl backup``.

Each database is copied with SQLite's online backup API, through a
read-only connection: one consistent snapshot of the file, holding every
write the daemon had acknowledged when its copy began, while the daemon
goes on writing. The registry is copied first, so every extension it lists
has its file in the backup (a file of an extension registered meanwhile
may be there too; ``register`` serves it). Each copy is written under a
temporary name, turned into a single self-contained file (a rollback
journal instead of a WAL beside it), synced, and only then given its name.
The backup is a data dir: a vtd started on it serves what it holds.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

REGISTRY = "registry.sqlite3"
EXTENSIONS = "extensions"


class BackupError(Exception):
    """The backup cannot be made, or a file of it cannot; the message says why."""


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The data dir of a daemon started by hand with no options or config file."""
    env = os.environ if env is None else env
    if env.get("VTD_DATA_DIR"):
        return Path(env["VTD_DATA_DIR"])
    data_home = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "vtd"


def back_up(data_dir: Path, destination: Path) -> list[Path]:
    """Copy every database of ``data_dir`` into the new directory ``destination``.

    Answer the files written, the registry first.
    """
    registry = data_dir / REGISTRY
    try:
        registry.stat()
    except FileNotFoundError:
        raise BackupError(
            f"{data_dir} holds no vtd data (it has no {REGISTRY}); "
            "name the daemon's data dir with --data-dir"
        ) from None
    except OSError as exc:
        raise BackupError(
            f"cannot read {data_dir}: {exc.strerror}; back up as the daemon's user, or as root"
        ) from None
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise BackupError(f"{destination} exists and is not empty; back up into a new directory")
    try:
        # As private as the data dir: parents=True alone would make DEST 0755.
        destination.mkdir(mode=0o700, parents=True, exist_ok=True)
        (destination / EXTENSIONS).mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create {destination}: {exc.strerror}") from None
    written: list[Path] = []
    failures: list[str] = []

    def copy(source: Path, target: Path) -> None:
        try:
            written.append(_copy(source, target))
        except BackupError as exc:  # one damaged file must not cost the others their backup
            failures.append(str(exc))

    copy(registry, destination / REGISTRY)  # first, and only then look for extensions
    for source in sorted((data_dir / EXTENSIONS).glob("*.sqlite3")):
        copy(source, destination / EXTENSIONS / source.name)
    _sync(destination / EXTENSIONS)
    _sync(destination)
    if failures:
        raise BackupError(
            f"copied {len(written)} files into {destination}, but not all: " + "; ".join(failures)
        )
    return written


def _copy(source: Path, target: Path) -> Path:
    partial = target.with_name(target.name + ".partial")
    try:
        with (
            closing(sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)) as reading,
            closing(sqlite3.connect(partial, isolation_level=None)) as writing,
        ):
            reading.backup(writing)
            writing.execute("PRAGMA journal_mode = DELETE")
        _sync(partial)
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"cannot copy {source}: {exc}") from None
    return target


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
