"""Failing disks and damaged files: clear errors, reads go on, nothing lost, self-healing."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.crash import integrity_ok
from tests.wire import DaemonProcess, RpcFailed, call_sync, seed


def _seed(path: Path, extension: str) -> None:
    seed(path, extension)
    call_sync(path, "data.set", extensionId=extension, id="i", key="kept", value="before")


def _error(path: Path, method: str, **params: object) -> dict:
    with pytest.raises(RpcFailed) as caught:
        call_sync(path, method, **params)
    return caught.value.error


def test_a_damaged_file_fails_only_its_extension_until_it_is_moved_aside(
    daemon_process: DaemonProcess,
) -> None:
    path = daemon_process.socket_path
    _seed(path, "good")
    _seed(path, "broken")
    assert daemon_process.stop() == 0
    broken = daemon_process.data_dir / "extensions" / "broken.sqlite3"
    broken.write_bytes(b"this is not a database\n" * 500)
    for suffix in ("-wal", "-shm"):
        Path(f"{broken}{suffix}").unlink(missing_ok=True)

    daemon_process.start()
    assert call_sync(path, "data.get", extensionId="good", id="i") == {"kept": "before"}
    for method, params in [
        ("data.get", {"id": "i"}),
        ("characters.upsert", {"id": "x"}),
    ]:
        error = _error(path, method, extensionId="broken", **params)
        assert error["code"] == -32004
        assert error["data"]["extensionId"] == "broken"
        assert "not a SQLite database" in error["data"]["reason"]
        assert "move it aside" in error["data"]["reason"]
    assert str(broken) in daemon_process.stderr()
    call_sync(path, "data.set", extensionId="good", id="i", key="during", value=1)

    broken.rename(broken.with_suffix(".damaged"))  # what the reason tells a person to do
    assert call_sync(path, "characters.list", extensionId="broken") == []
    call_sync(path, "characters.upsert", extensionId="broken", id="fresh")
    assert call_sync(path, "data.get", extensionId="good", id="i") == {
        "kept": "before",
        "during": 1,
    }


def _largest_file(directory: Path) -> int:
    return max(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def test_a_full_disk_fails_writes_keeps_reads_and_heals(daemon_process: DaemonProcess) -> None:
    path = daemon_process.socket_path
    _seed(path, "full")
    assert daemon_process.process is not None
    pid = daemon_process.process.pid
    # A file size limit on the running daemon stands in for a full disk: any
    # write that grows a file past it fails (EFBIG), as on a full disk.
    limit = max(_largest_file(daemon_process.data_dir), 64 * 1024) + 256 * 1024
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    big = "x" * (2 * 1024 * 1024)
    try:
        for _ in range(2):
            error = _error(path, "data.set", extensionId="full", id="i", key="big", value=big)
            assert error["code"] == -32004
            assert error["data"]["extensionId"] == "full"
            assert "retry" in error["data"]["reason"]
        assert call_sync(path, "data.get", extensionId="full", id="i") == {"kept": "before"}
        assert integrity_ok(daemon_process.data_dir / "extensions" / "full.sqlite3")
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    call_sync(path, "data.set", extensionId="full", id="i", key="big", value=big)
    assert daemon_process.stop() == 0
    daemon_process.start()
    stored = call_sync(path, "data.get", extensionId="full", id="i")
    assert stored == {"kept": "before", "big": big}
    assert integrity_ok(daemon_process.data_dir / "extensions" / "full.sqlite3")


def test_a_read_only_data_dir_is_one_line_and_nonzero(short_dir: Path) -> None:
    data = short_dir / "data"
    data.mkdir()
    # Root ignores file modes, so make the directory immutable instead.
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(data)], capture_output=True).returncode:
        pytest.skip("cannot make a directory read-only here (chattr +i unavailable)")
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "vtd",
                "--socket",
                str(short_dir / "s.sock"),
                "--data-dir",
                str(data),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run([chattr, "-i", str(data)], check=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "data dir" in lines[0]
    assert "not writable" in lines[0]
