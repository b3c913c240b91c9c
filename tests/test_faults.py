"""Failing disks and damaged files: clear errors, reads go on, nothing lost, self-healing."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash import integrity_ok
from tests.wire import DaemonProcess, RpcFailed, call_sync, seed, wait_until


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


@pytest.fixture
def small_disk(short_dir: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs), so the disk can really fill up."""
    mount = short_dir / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as exc:
        failure = exc.errno
    finally:
        os.close(fd)
    assert failure == errno.ENOSPC
    return filler


def test_a_really_full_disk_refuses_then_heals_without_losing_a_value(
    short_dir: Path, small_disk: Path
) -> None:
    with DaemonProcess(short_dir / "vtd.sock", small_disk / "data") as daemon:
        path = daemon.socket_path
        _seed(path, "full")
        filler = _fill(small_disk)
        acked: dict[str, int] = {}
        refusal: dict = {}
        for n in range(2000):  # until the database, too, finds no room
            try:
                call_sync(path, "data.set", extensionId="full", id="i", key=f"k{n}", value=n)
            except RpcFailed as failed:
                refusal = failed.error
                break
            acked[f"k{n}"] = n
        assert refusal, "the disk never filled up"
        assert refusal["code"] == -32004
        assert "disk is full" in refusal["data"]["reason"]
        # A new extension's file cannot be made either; it is refused clearly.
        error = _error(path, "register", extensionId="late")
        assert error["code"] == -32004
        assert "retry" in error["data"]["reason"]
        assert call_sync(path, "data.getKey", extensionId="full", id="i", key="kept") == {
            "kept": "before"
        }

        filler.unlink()
        # The retries the errors ask for now work, with no restart.
        call_sync(path, "register", extensionId="late")
        seed(path, "late")
        call_sync(path, "data.set", extensionId="full", id="i", key="after", value=1)
        assert daemon.stop() == 0
        daemon.start()
        stored = call_sync(path, "data.get", extensionId="full", id="i")
        assert stored == {"kept": "before", **acked, "after": 1}
        assert call_sync(path, "characters.list", extensionId="late") != []
        assert daemon.stop() == 0


def test_a_change_of_registration_that_cannot_be_recorded_is_not_made(
    short_dir: Path, small_disk: Path
) -> None:
    with DaemonProcess(short_dir / "vtd.sock", small_disk / "data") as daemon:
        path = daemon.socket_path
        _seed(path, "kept")
        _seed(path, "leaving")
        filler = _fill(small_disk)

        # The registry's file has no room for either change: both callers are
        # told, naming their extension, and neither change is made.
        error = _error(path, "register", extensionId="newcomer")
        assert error["code"] == -32004
        assert error["data"]["extensionId"] == "newcomer"
        assert error["data"]["reason"].startswith("the registration could not be recorded")
        assert "disk is full" in error["data"]["reason"]
        error = _error(path, "deregister", extensionId="leaving")
        assert error["code"] == -32004
        assert error["data"]["extensionId"] == "leaving"
        assert error["data"]["reason"].startswith("the deregistration could not be recorded")
        registered = [{"extensionId": "kept"}, {"extensionId": "leaving"}]
        assert call_sync(path, "extensions.list") == registered
        assert _error(path, "characters.list", extensionId="newcomer")["code"] == -32001

        filler.unlink()
        wait_until(  # the extension put back after its failed deregistration reopens
            lambda: _answers(path, "data.get", extensionId="leaving", id="i"),
            message="the extension still registered to answer",
        )
        assert call_sync(path, "data.get", extensionId="leaving", id="i") == {"kept": "before"}
        assert daemon.stop() == 0
        daemon.start()  # a restart finds what the callers were told
        assert call_sync(path, "extensions.list") == registered
        assert call_sync(path, "data.get", extensionId="leaving", id="i") == {"kept": "before"}
        assert daemon.stop() == 0


def _answers(path: Path, method: str, **params: object) -> bool:
    try:
        call_sync(path, method, **params)
    except RpcFailed:
        return False
    return True


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
