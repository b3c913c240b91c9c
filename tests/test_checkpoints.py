"""The WAL is checkpointed while writes go on, so it stays bounded."""

from __future__ import annotations

import random
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from tests.wire import DaemonProcess, wait_until
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
