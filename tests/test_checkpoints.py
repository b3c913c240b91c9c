"""The WAL is checkpointed while writes go on, so it stays bounded, and emptied once idle."""

from __future__ import annotations

import logging
import random
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from tests.conftest import start_daemon
from tests.wire import DaemonProcess, eventually, wait_until
from vtd import actor
from vtd.config import Config
from vtd_client import Client


def _rows_in_database_file(path: Path, scratch: Path) -> int:
    """Rows of ``data`` in the database file alone, without its WAL (0 if unreadable now)."""
    shutil.copyfile(path, scratch)  # the copy has no -wal beside it
    try:
        with closing(sqlite3.connect(f"file:{scratch}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM data").fetchone()[0])
    except sqlite3.Error:
        return 0  # copied in the middle of a checkpoint's writes: look again
    finally:
        scratch.unlink()


def test_steady_writes_reach_the_database_file_and_keep_the_wal_small(
    daemon_process: DaemonProcess, tmp_path: Path
) -> None:
    rng = random.Random(7)
    keys: set[tuple[int, int]] = set()
    with Client(daemon_process.socket_path, timeout=60) as client:
        client.register("busy")
        busy = client.extension("busy")
        busy.upsert_character("c")
        client.batch(
            [
                ("instances.upsert", {"extensionId": "busy", "id": f"i{n}", "characterId": "c"})
                for n in range(100)
            ]
        )
        for _ in range(160):  # 20,480 writes, spread over many pages
            writes = []
            for n in range(128):
                instance, key = rng.randrange(100), rng.randrange(1000)
                keys.add((instance, key))
                params = {"extensionId": "busy", "id": f"i{instance}", "key": f"k{key}", "value": n}
                writes.append(("data.set", params))
            client.batch(writes)

    database = daemon_process.data_dir / "extensions" / "busy.sqlite3"
    wal = database.with_name(database.name + "-wal")
    # Without checkpoints the WAL would hold every page written: tens of MiB.
    assert wal.stat().st_size < 16 * 1024 * 1024
    # Checkpoints run on their own, without a restart: the file alone has the rows.
    scratch = tmp_path / "copy.sqlite3"
    wait_until(
        lambda: _rows_in_database_file(database, scratch) >= len(keys) // 2,
        message="the rows to reach the database file",
    )


def test_the_wal_stays_bounded_while_writes_never_pause_with_reads_between(
    daemon_process: DaemonProcess,
) -> None:
    # Four clients keep the writer busy without a gap, so a checkpoint beside
    # it never finds the WAL idle; the WAL must still be reset and trimmed.
    # A fifth keeps reading, so the event loop's shared read snapshot is
    # taken whenever the writer is idle: it must not keep the WAL from
    # starting over, nor hide a commit from the next read.
    path = daemon_process.socket_path
    with Client(path, timeout=60) as client:
        client.register("busy")
        client.extension("busy").upsert_character("c")
        client.batch(
            [
                ("instances.upsert", {"extensionId": "busy", "id": f"i{n}", "characterId": "c"})
                for n in range(100)
            ]
        )
    writing = threading.Event()
    reads: list[tuple[int, object]] = []  # (value written and acknowledged, value read next)

    def read() -> None:
        with Client(path, timeout=60) as client:
            busy = client.extension("busy")
            n = 0
            while writing.is_set():
                n += 1
                busy.set_data_key("i0", "counter", n)
                reads.append((n, busy.get_data_key("i0", "counter")))

    value = "v" * 8192
    written = 4 * 24 * 128 * len(value)  # 96 MiB of values

    def write(worker: int) -> None:
        with Client(path, timeout=60) as client:
            for round_ in range(24):
                client.batch(
                    [
                        (
                            "data.set",
                            {
                                "extensionId": "busy",
                                "id": f"i{(worker * 31 + n) % 100}",
                                "key": f"k{round_}-{n}",
                                "value": value,
                            },
                        )
                        for n in range(128)
                    ]
                )

    writing.set()
    reading = threading.Thread(target=read)
    reading.start()
    workers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    writing.clear()
    reading.join()
    assert reads, "the reader read nothing"
    assert [read for written, read in reads] == [written for written, read in reads]

    database = daemon_process.data_dir / "extensions" / "busy.sqlite3"
    wal = database.with_name(database.name + "-wal")
    assert wal.stat().st_size < written // 3, f"WAL {wal.stat().st_size:,} bytes"
    with Client(path) as client:
        busy = client.extension("busy")
        stored = [v for n in range(100) for v in busy.get_data(f"i{n}").values()]
        last = reads[-1][0]
        assert busy.get_data_key("i0", "counter") == last
    assert len(stored) == 4 * 24 * 128 + 1  # every write acknowledged is there
    assert set(stored) == {value, last}


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else -1


@pytest.mark.anyio
async def test_an_idle_writer_truncates_its_wal_and_keeps_every_write(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actor, "IDLE_BEFORE_TRIM", 1.0)  # the assertions between take far less
    wal = config.data_dir / "extensions" / "quiet.sqlite3-wal"
    async with anyio.create_task_group() as tg:
        running = await start_daemon(config, tg)
        async with await running.connect() as wire:
            await wire.seed("quiet")
            for n in range(50):
                await wire.call("data.set", extensionId="quiet", id="i", key=f"k{n}", value=n)
            # Nothing else keeps the WAL from being emptied: it ends at 0 bytes
            # (SQLite alone would leave it as large as it grew).
            await eventually(lambda: _size(wal) == 0, message="the idle WAL to be truncated")
            stored = await wire.call("data.get", extensionId="quiet", id="i")
            assert stored == {f"k{n}": n for n in range(50)}
            await wire.call("data.set", extensionId="quiet", id="i", key="after", value="trim")
            after = await wire.call("data.getKey", extensionId="quiet", id="i", key="after")
            assert after == {"after": "trim"}
            assert _size(wal) > 0  # the next commit goes to the WAL as before
            await eventually(lambda: _size(wal) == 0, message="the WAL to be truncated again")
        running.daemon.stop()

    # Every write is in the database file itself, with no WAL beside it.
    with closing(sqlite3.connect(config.data_dir / "extensions" / "quiet.sqlite3")) as conn:
        assert conn.execute("SELECT count(*) FROM data").fetchone()[0] == 51


@pytest.mark.anyio
async def test_a_reader_holding_the_wal_delays_its_truncation_while_writes_go_on(
    config: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(actor, "IDLE_BEFORE_TRIM", 0.5)
    caplog.set_level(logging.DEBUG, logger="vtd.actor")
    database = config.data_dir / "extensions" / "held.sqlite3"
    wal = database.with_name(database.name + "-wal")
    async with anyio.create_task_group() as tg:
        running = await start_daemon(config, tg)
        async with await running.connect() as wire:
            await wire.seed("held")
            await wire.call("data.set", extensionId="held", id="i", key="before", value=1)
            # Another process reads the file and keeps its snapshot open.
            with closing(sqlite3.connect(database, isolation_level=None)) as reader:
                reader.execute("BEGIN")
                assert reader.execute("SELECT count(*) FROM data").fetchone() == (1,)
                await eventually(
                    lambda: "held: a reader holds the WAL" in caplog.text,
                    message="a truncation to find the WAL held",
                )
                assert _size(wal) > 0
                # Writes go on while the reader reads.
                await wire.call("data.set", extensionId="held", id="i", key="during", value=2)
                reader.execute("COMMIT")
            await eventually(lambda: _size(wal) == 0, message="the released WAL to be truncated")
            stored = await wire.call("data.get", extensionId="held", id="i")
            assert stored == {"before": 1, "during": 2}
        running.daemon.stop()
