"""``vtctl backup``: a copy of the data dir, made while vtd writes, that a vtd serves."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from tests.test_vtctl import VTCTL
from tests.wire import DaemonProcess, seed, wait_until
from vtd_client import Client
from vtd_client.backup import BackupError, back_up


def backup(data_dir: Path, destination: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VTCTL), "backup", str(destination), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_backup_made_during_writes_holds_every_acknowledged_write_and_is_served(
    daemon_process: DaemonProcess, short_dir: Path
) -> None:
    path = daemon_process.socket_path
    for name in ("quiet", "busy"):
        seed(path, name)
    with Client(path) as client:
        client.extension("quiet").set_data_key("i", "kept", "123")
    acknowledged: list[int] = []
    stop = threading.Event()

    def write() -> None:
        with Client(path) as client:
            busy = client.extension("busy")
            n = 0
            while not stop.is_set():
                busy.set_data_key("i", f"k{n}", n)
                acknowledged.append(n)
                n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # The copy starts in the middle of the writes.
        wait_until(lambda: len(acknowledged) >= 200 or not writer.is_alive(), message="writes")
        assert writer.is_alive(), "the writer stopped early"
        before = len(acknowledged)
        destination = short_dir / "backup"
        result = backup(daemon_process.data_dir, destination)
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"] == 3  # the registry and both extensions
    assert stat.S_IMODE(destination.stat().st_mode) == 0o700  # private, as the data dir
    # Each copy is one file, without a WAL beside it.
    assert sorted(p.name for p in destination.rglob("*")) == [
        "busy.sqlite3",
        "extensions",
        "quiet.sqlite3",
        "registry.sqlite3",
    ]
    with closing(sqlite3.connect(destination / "extensions" / "busy.sqlite3")) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    restored = DaemonProcess(short_dir / "restored.sock", destination)
    with restored, Client(restored.socket_path) as client:
        assert client.list_extensions() == ["busy", "quiet"]
        assert client.extension("quiet").get_data_key("i", "kept") == "123"
        held = client.extension("busy").get_data("i")
    missing = [n for n in range(before) if held.get(f"k{n}") != n]
    assert not missing, f"acknowledged before the backup, missing from it: {missing[:10]}"
    assert len(held) <= len(acknowledged)


def test_a_backup_refuses_a_dir_without_vtd_data_and_a_destination_in_use(
    daemon_process: DaemonProcess, short_dir: Path
) -> None:
    with Client(daemon_process.socket_path) as client:
        client.extension("x").register()
    nowhere = backup(short_dir / "nothing-here", short_dir / "b1")
    assert nowhere.returncode == 2
    assert "has no registry.sqlite3" in nowhere.stderr
    assert "--data-dir" in nowhere.stderr
    assert not (short_dir / "b1").exists()

    used = short_dir / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    refused = backup(daemon_process.data_dir, used)
    assert refused.returncode == 2
    assert f"{used} exists and is not empty" in refused.stderr
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]


def test_a_damaged_database_is_named_and_the_others_are_still_backed_up(
    daemon_process: DaemonProcess, short_dir: Path
) -> None:
    with Client(daemon_process.socket_path) as client:
        client.extension("fine").register()
        client.extension("fine").upsert_character("c", name="C")
    (daemon_process.data_dir / "extensions" / "broken.sqlite3").write_text("not a database")
    destination = short_dir / "backup"
    result = backup(daemon_process.data_dir, destination)
    assert result.returncode == 2
    assert "broken.sqlite3" in result.stderr
    assert "copied 2 files" in result.stderr
    assert sorted(p.name for p in (destination / "extensions").iterdir()) == ["fine.sqlite3"]
    with closing(sqlite3.connect(destination / "extensions" / "fine.sqlite3")) as copy:
        assert copy.execute("SELECT id FROM characters").fetchall() == [("c",)]


def _back_up_as_nobody(data_dir: Path, destination: Path) -> str:
    os.setgid(65534)
    os.setuid(65534)
    try:
        back_up(data_dir, destination)
    except BackupError as exc:
        return str(exc)
    return "no error"


def test_a_data_dir_the_user_may_not_read_is_said_to_be_so(
    daemon_process: DaemonProcess, short_dir: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to become a user who may not read the data dir")
    # A fresh interpreter, started as root (this virtualenv's path may be
    # private to root), becomes nobody and runs the backup's own code.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        run = pool.submit(_back_up_as_nobody, daemon_process.data_dir, short_dir / "nobody")
        message = run.result(timeout=60)
    assert message.startswith(f"cannot read {daemon_process.data_dir}: Permission denied"), message
    assert "as the daemon's user, or as root" in message
