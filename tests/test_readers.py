"""The reader's two paths: at once on the event loop, or waiting on its own thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from vtd.errors import MustWait
from vtd.readers import NOW_MAX_VALUE_BYTES, Reader

pytestmark = pytest.mark.anyio


def _first_x(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT x FROM t").fetchone()[0])


async def test_a_read_at_once_never_waits_for_a_lock_and_a_threaded_read_waits_it_out(
    tmp_path: Path,
) -> None:
    # A rollback-journal file, so that a writer's exclusive lock shuts readers
    # out (vtd's own files are WAL, where only crash recovery can do that).
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("INSERT INTO t VALUES (1)")
    reader = Reader("test", path)
    try:
        assert reader.run_now(_first_x) == 1
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE t SET x = 2")
        with pytest.raises(MustWait):
            reader.run_now(_first_x)
        assert reader.run_now(lambda conn: 0) == 0  # the connection is still usable

        asked = threading.Event()

        def read_then_ask(conn: sqlite3.Connection) -> int:
            asked.set()  # the threaded read has begun: now free the lock
            return _first_x(conn)

        async def release_when_asked() -> None:
            await anyio.to_thread.run_sync(asked.wait)
            await anyio.to_thread.run_sync(holder.execute, "COMMIT")

        async with anyio.create_task_group() as tg:
            tg.start_soon(release_when_asked)
            with anyio.fail_after(10):
                assert await reader.run(read_then_ask) == 2
    finally:
        reader.close()
        holder.close()


def _sum_x(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT sum(x) FROM t").fetchone()[0])


ROWS = 200_000
"""Enough rows that summing them takes far longer than a read may hold the event loop
(about 7 ms here, against 1 ms)."""


def _large_table(path: Path) -> sqlite3.Connection:
    """A WAL file whose table ``t`` holds 0 .. ROWS-1; answer its autocommit connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("BEGIN")  # one commit, not one per row
    conn.executemany("INSERT INTO t VALUES (?)", ((n,) for n in range(ROWS)))
    conn.execute("COMMIT")
    return conn


async def test_a_long_read_is_refused_at_once_and_answered_whole_by_the_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "large.sqlite3"
    _large_table(path).close()
    reader = Reader("test", path)
    try:
        with pytest.raises(MustWait):
            reader.run_now(_sum_x)
        assert reader.run_now(_first_x) == 0  # short reads still go at once
        with anyio.fail_after(10):
            assert await reader.run(_sum_x) == sum(range(ROWS))
    finally:
        reader.close()


def _text_of(key: str) -> Callable[[sqlite3.Connection], str]:
    def read(conn: sqlite3.Connection) -> str:
        return str(conn.execute("SELECT v FROM texts WHERE k = ?", (key,)).fetchone()[0])

    return read


async def test_a_long_value_is_refused_at_once_and_answered_whole_by_the_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "texts.sqlite3"
    longest = "x" * NOW_MAX_VALUE_BYTES
    too_long = "y" * (NOW_MAX_VALUE_BYTES + 1)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE texts (k, v)")
        conn.executemany("INSERT INTO texts VALUES (?, ?)", [("a", longest), ("b", too_long)])
    conn.close()
    reader = Reader("test", path)
    try:
        assert reader.run_now(_text_of("a")) == longest
        with pytest.raises(MustWait):
            reader.run_now(_text_of("b"))
        assert reader.run_now(_text_of("a")) == longest  # the connection is still usable
        with anyio.fail_after(10):
            assert await reader.run(_text_of("b")) == too_long
    finally:
        reader.close()


async def test_a_read_cut_short_leaves_no_old_snapshot_behind(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    writer = _large_table(path)

    def sum_in_a_transaction_left_open(conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN")
        return _sum_x(conn)  # interrupted, and nothing here ends the transaction

    reader = Reader("test", path)
    try:
        with pytest.raises(MustWait):
            reader.run_now(sum_in_a_transaction_left_open)
        writer.execute("UPDATE t SET x = -1 WHERE rowid = 1")
        assert reader.run_now(_first_x) == -1  # the write is seen: no stale snapshot
    finally:
        reader.close()
        writer.close()


async def test_reads_share_a_snapshot_only_while_the_writer_says_it_is_idle(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wal.sqlite3"
    writer = _large_table(path)
    writer.execute("UPDATE t SET x = 1 WHERE rowid = 1")
    reader = Reader("test", path)
    try:
        reader.writer_idle()
        assert reader.run_now(_first_x) == 1
        writer.execute("UPDATE t SET x = 2 WHERE rowid = 1")  # unannounced: not seen
        assert reader.run_now(_first_x) == 1
        reader.writer_busy()  # as vtd's writer does before each batch
        assert reader.run_now(_first_x) == 2
        writer.execute("UPDATE t SET x = 3 WHERE rowid = 1")
        assert reader.run_now(_first_x) == 3  # while it is busy, every read looks afresh
        reader.writer_idle()
        assert reader.run_now(_first_x) == 3
    finally:
        reader.close()
        writer.close()
