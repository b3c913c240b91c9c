"""The daemon as a process: restarts, signals, and the socket file."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wire import DaemonProcess, call_sync, seed


def _seed(path: Path) -> None:
    call_sync(path, "register", extensionId="keep")
    call_sync(path, "register", extensionId="drop")
    call_sync(path, "characters.upsert", extensionId="keep", id="c", name="C")
    call_sync(path, "instances.upsert", extensionId="keep", id="i", characterId="c")
    call_sync(path, "data.merge", extensionId="keep", id="i", data={"s": "123", "n": 1.0})
    call_sync(path, "characters.upsert", extensionId="drop", id="d")


def test_registrations_and_data_survive_a_restart(daemon_process: DaemonProcess) -> None:
    path = daemon_process.socket_path
    _seed(path)
    assert daemon_process.stop() == 0
    daemon_process.start()
    assert call_sync(path, "extensions.list") == [{"extensionId": "drop"}, {"extensionId": "keep"}]
    assert call_sync(path, "data.get", extensionId="keep", id="i") == {"s": "123", "n": 1.0}


def test_deregister_then_register_brings_data_back(daemon_process: DaemonProcess) -> None:
    path = daemon_process.socket_path
    _seed(path)
    call_sync(path, "deregister", extensionId="drop")
    assert daemon_process.stop() == 0
    daemon_process.start()
    assert call_sync(path, "extensions.list") == [{"extensionId": "keep"}]
    call_sync(path, "register", extensionId="drop")
    assert [c["id"] for c in call_sync(path, "characters.list", extensionId="drop")] == ["d"]


def test_socket_is_0600_and_sigterm_removes_it(daemon_process: DaemonProcess) -> None:
    path = daemon_process.socket_path
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert daemon_process.stop() == 0
    assert not path.exists()


def test_sigint_is_graceful_too(daemon_process: DaemonProcess) -> None:
    daemon_process.signal(signal.SIGINT)
    assert daemon_process.wait() == 0
    assert not daemon_process.socket_path.exists()


def test_socket_mode_flag(short_dir: Path) -> None:
    with DaemonProcess(short_dir / "s.sock", short_dir / "data", "--socket-mode", "0660") as d:
        assert stat.S_IMODE(d.socket_path.stat().st_mode) == 0o660


def test_created_directories_are_private(short_dir: Path) -> None:
    sock = short_dir / "run" / "vtd" / "vtd.sock"
    with DaemonProcess(sock, short_dir / "state" / "vtd"):
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE((short_dir / "state" / "vtd").stat().st_mode) == 0o700


def test_a_socket_for_a_group_gets_a_directory_the_group_can_pass(short_dir: Path) -> None:
    sock = short_dir / "run" / "vtd.sock"
    with DaemonProcess(sock, short_dir / "data", "--socket-mode", "0660"):
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o710
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660


def _refused_start(daemon: DaemonProcess) -> str:
    """Start a daemon that must refuse to: it exits 1 saying why in one line; answer the line."""
    daemon.start(wait=False)
    assert daemon.wait() == 1
    err = daemon.stderr().strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_second_daemon_on_a_live_socket_exits_and_leaves_the_first(
    daemon_process: DaemonProcess, short_dir: Path
) -> None:
    second = DaemonProcess(daemon_process.socket_path, short_dir / "other")
    assert "already listening" in _refused_start(second)
    assert call_sync(daemon_process.socket_path, "probe")["ok"] is True


def test_a_second_daemon_on_the_same_data_dir_exits_and_leaves_the_first(
    daemon_process: DaemonProcess, short_dir: Path
) -> None:
    assert daemon_process.process is not None
    second = DaemonProcess(short_dir / "second.sock", daemon_process.data_dir)
    err = _refused_start(second)
    assert f"another vtd (pid {daemon_process.process.pid}) is using the data dir" in err
    assert not (short_dir / "second.sock").exists()
    assert call_sync(daemon_process.socket_path, "probe")["ok"] is True
    # The lock goes with the process, however it ends.
    daemon_process.kill()
    second.start()
    assert call_sync(second.socket_path, "probe")["ok"] is True
    assert second.stop() == 0


def test_stale_socket_file_is_replaced(short_dir: Path) -> None:
    path = short_dir / "vtd.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    with DaemonProcess(path, short_dir / "data"):
        assert call_sync(path, "probe")["ok"] is True


def test_a_path_that_is_not_a_socket_is_never_deleted(short_dir: Path) -> None:
    path = short_dir / "precious.txt"
    path.write_text("keep me")
    daemon = DaemonProcess(path, short_dir / "data")
    assert "not a socket" in _refused_start(daemon)
    assert path.read_text() == "keep me"


def test_a_socket_directory_others_may_write_is_refused(short_dir: Path) -> None:
    shared = short_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # as /tmp/vtd-$UID would be if another user made it first
    daemon = DaemonProcess(shared / "vtd.sock", short_dir / "data")
    assert "writable by other users" in _refused_start(daemon)
    assert not (shared / "vtd.sock").exists()


def test_a_socket_directory_of_another_user_is_refused(short_dir: Path) -> None:
    theirs = short_dir / "theirs"
    theirs.mkdir(mode=0o700)
    if os.getuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    os.chown(theirs, 4321, 4321)
    daemon = DaemonProcess(theirs / "vtd.sock", short_dir / "data")
    assert "belongs to uid 4321" in _refused_start(daemon)


def test_a_sticky_world_writable_directory_is_accepted(short_dir: Path) -> None:
    sticky = short_dir / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp itself: others cannot remove vtd's socket
    with DaemonProcess(sticky / "vtd.sock", short_dir / "data") as daemon:
        assert call_sync(daemon.socket_path, "probe")["ok"] is True


def _vtd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vtd", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_help_and_version() -> None:
    help_text = _vtd("--help").stdout
    for flag in ("--socket", "--data-dir", "--socket-mode", "--max-message", "--log-level"):
        assert flag in help_text
    assert "VTD_SOCKET" in help_text
    assert _vtd("--version").stdout.startswith("vtd ")


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--socket-mode", "999"], {}, "--socket-mode"),
        (["--max-message", "-1"], {}, "--max-message"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--line-timeout", "soon"], {}, "--line-timeout"),
        (["--bogus"], {}, "--bogus"),
        ([], {"VTD_MAX_MESSAGE": "lots"}, "VTD_MAX_MESSAGE"),
        ([], {"VTD_SOCKET_MODE": "rw"}, "VTD_SOCKET_MODE"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    args: list[str], env: dict[str, str], fragment: str
) -> None:
    result = _vtd(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_environment_sets_paths(short_dir: Path) -> None:
    env = {"VTD_SOCKET": str(short_dir / "env.sock"), "VTD_DATA_DIR": str(short_dir / "envdata")}
    daemon = DaemonProcess(
        short_dir / "env.sock",
        short_dir / "envdata",
        env=env,
        command=[sys.executable, "-m", "vtd"],
    )
    with daemon:
        assert (short_dir / "envdata" / "registry.sqlite3").exists()
        assert daemon.stop() == 0
    assert "ready on" in daemon.stderr()


def test_unwritable_data_dir_is_one_line_and_nonzero(short_dir: Path) -> None:
    blocker = short_dir / "file"
    blocker.write_text("")
    daemon = DaemonProcess(short_dir / "s.sock", blocker / "data")
    assert "data dir" in _refused_start(daemon)


def test_sigterm_answers_the_requests_in_flight_and_keeps_them(
    daemon_process: DaemonProcess,
) -> None:
    path = daemon_process.socket_path
    seed(path, "drain")
    lines = b"".join(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": n,
                "method": "data.set",
                "params": {"extensionId": "drain", "id": "i", "key": f"k{n}", "value": n},
            }
        ).encode()
        + b"\n"
        for n in range(2000)
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(lines)
        first = sock.recv(65536)  # the daemon is working on them
        daemon_process.signal(signal.SIGTERM)
        data = first
        while chunk := sock.recv(65536):
            data += chunk
    answers = [json.loads(line) for line in data.splitlines()]
    assert daemon_process.wait() == 0
    # Answers kept coming after the signal (requests in flight were finished),
    # and the daemon stopped reading: the rest of the 2,000 were never started.
    assert len(answers) > first.count(b"\n")
    assert len(answers) < 2000
    acknowledged = {a["id"] for a in answers if "result" in a}
    assert acknowledged, "no answer arrived before the stop"
    assert all("result" in a for a in answers), "an answer in flight failed"
    daemon_process.start()
    stored = call_sync(path, "data.get", extensionId="drain", id="i")
    assert all(stored[f"k{n}"] == n for n in acknowledged)
