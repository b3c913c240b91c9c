"""Running under systemd: socket activation, sd_notify, watchdog, units, journald logs."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.wire import DaemonProcess, answers, call_sync, wait_until
from vtd import units
from vtd_client import Busy, Client

REPO = Path(__file__).parent.parent
needs_activate = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate is not installed (Debian package: systemd)",
)
needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package: systemd)",
)


class NotifySocket:
    """The service manager's end of sd_notify: a datagram socket the test reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def next(self, timeout: float = 15) -> str:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        self.messages.append((time.monotonic(), data))
        return data

    def wait_for(self, field: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if field in message.split("\n"):
                return message

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(short_dir: Path):
    sock = NotifySocket(short_dir / "notify")
    yield sock
    sock.close()


@needs_activate
def test_socket_activation_serves_on_the_passed_socket_and_leaves_it(short_dir: Path) -> None:
    path = short_dir / "activated.sock"
    command = [
        "systemd-socket-activate",
        "-l",
        str(path),
        sys.executable,
        "-m",
        "vtd",
        "--data-dir",
        str(short_dir / "data"),
    ]
    with DaemonProcess(path, short_dir / "data", command=command) as daemon:
        call_sync(path, "register", extensionId="activated")
        assert daemon.stop() == 0
    assert path.exists(), "the socket belongs to systemd: vtd must leave it"
    assert "passed by systemd" in daemon.stderr()


def _start_notified(short_dir: Path, notify: NotifySocket, **env: str) -> DaemonProcess:
    daemon = DaemonProcess(
        short_dir / "vtd.sock", short_dir / "data", env={"NOTIFY_SOCKET": str(notify.path), **env}
    )
    return daemon.start(wait=False)


def test_ready_comes_only_once_the_daemon_answers(short_dir: Path, notify: NotifySocket) -> None:
    with DaemonProcess(short_dir / "vtd.sock", short_dir / "data") as first:
        call_sync(first.socket_path, "register", extensionId="preloaded")
        call_sync(first.socket_path, "characters.upsert", extensionId="preloaded", id="c")
    daemon = _start_notified(short_dir, notify)
    with daemon:
        message = notify.wait_for("READY=1")
        # At READY, the socket answers and registered extensions are open.
        assert answers(daemon.socket_path)
        chars = call_sync(daemon.socket_path, "characters.list", extensionId="preloaded")
        assert [c["id"] for c in chars] == ["c"]
        assert any(line.startswith("STATUS=") for line in message.split("\n"))
        daemon.signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert daemon.wait() == 0


# The units ask for WatchdogSec=30s: even then the status must not lag by 15 s.
@pytest.mark.parametrize("watchdog_usec", ["400000", "30000000"], ids=["short", "units"])
def test_status_line_counts_extensions_and_connections(
    short_dir: Path, notify: NotifySocket, watchdog_usec: str
) -> None:
    with _start_notified(short_dir, notify, WATCHDOG_USEC=watchdog_usec) as daemon:
        notify.wait_for("READY=1")
        call_sync(daemon.socket_path, "register", extensionId="one")
        notify.wait_for("STATUS=serving 1 extensions, 0 connections", timeout=10)
        assert daemon.stop() == 0


def test_watchdog_pings_at_half_the_interval(short_dir: Path, notify: NotifySocket) -> None:
    with _start_notified(short_dir, notify, WATCHDOG_USEC="400000") as daemon:
        notify.wait_for("READY=1")
        pings = [notify.wait_for("WATCHDOG=1") for _ in range(6)]
        times = [t for t, m in notify.messages if "WATCHDOG=1" in m.split("\n")][-6:]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(pings) == 6
        # Every 0.2 s; generous bounds, since CI machines are shared and noisy.
        assert all(0.05 < gap < 1.0 for gap in gaps), gaps
        assert daemon.stop() == 0


def test_a_stuck_writer_stops_the_watchdog_pings(short_dir: Path, notify: NotifySocket) -> None:
    with _start_notified(short_dir, notify, WATCHDOG_USEC="400000") as daemon:
        notify.wait_for("READY=1")
        path = daemon.socket_path
        call_sync(path, "register", extensionId="stuck")
        call_sync(path, "characters.upsert", extensionId="stuck", id="c")
        # Another process holds the database's write lock: the writer's next
        # transaction waits (a real stall, no test hook needed).
        blocker = sqlite3.connect(daemon.data_dir / "extensions" / "stuck.sqlite3")
        blocker.execute("BEGIN EXCLUSIVE")
        write = threading.Thread(
            target=lambda: call_sync(
                path, "characters.upsert", extensionId="stuck", id="d", timeout=30
            ),
        )
        write.start()
        try:
            notify.messages.clear()
            # While stuck (over 2 x 0.2 s), no ping may come for a whole second.
            silent_since = None
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                try:
                    message = notify.next(timeout=0.3)
                except TimeoutError:
                    message = ""
                now = time.monotonic()
                if "WATCHDOG=1" in message.split("\n"):
                    silent_since = None
                elif silent_since is None:
                    silent_since = now
                elif now - silent_since > 1.0:
                    break
            else:
                pytest.fail(f"pings never stopped: {notify.messages}")
        finally:
            blocker.rollback()
            blocker.close()
        write.join(30)
        notify.wait_for("WATCHDOG=1")  # healthy again once the lock is gone
        assert daemon.stop() == 0
        assert "writer stuck" in daemon.stderr()


def test_journal_logs_carry_priorities_and_no_timestamps(short_dir: Path) -> None:
    with DaemonProcess(
        short_dir / "vtd.sock", short_dir / "data", env={"JOURNAL_STREAM": "8:12345"}
    ) as daemon:
        assert daemon.stop() == 0
    lines = daemon.stderr().strip().splitlines()
    assert lines
    assert all(re.match(r"<[0-7]>vtd\.", line) for line in lines), lines
    assert any(line.startswith("<6>vtd.daemon: vtd ") for line in lines)


def test_config_file_precedence_and_sighup(short_dir: Path) -> None:
    config = short_dir / "vtd.toml"
    config.write_text('socket-mode = "0640"\nlog-level = "info"\nmax-connections = 1\n')
    daemon = DaemonProcess(
        short_dir / "vtd.sock",
        short_dir / "data",
        "--config",
        str(config),
        "--max-connections",
        "3",
        env={"VTD_SOCKET_MODE": "0660"},
    )
    with daemon, Client(daemon.socket_path) as held, Client(daemon.socket_path) as second:
        assert (daemon.socket_path.stat().st_mode & 0o777) == 0o660  # variable beats file
        wait_until(lambda: _pings(held) and _pings(second), message="two connections served")
        # ...so the flag's 3 connections beat the file's 1.
        config.write_text('log-level = "debug"\n')
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "log level is debug" in daemon.stderr(), message="the reload")
        assert held.ping("still here") == "Pong! still here"  # no connection dropped
        call_sync(daemon.socket_path, "ping")
        wait_until(lambda: "connected (pid" in daemon.stderr(), message="a debug line")
        assert daemon.stop() == 0


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_exec_reload_reloads_with_no_kill_binary(short_dir: Path, user: bool) -> None:
    # systemd runs ExecReload= with the main PID in $MAINPID; minimal images
    # have no kill binary, so the command must work with an empty PATH.
    service = units.render(user=user)["vtd.service"]
    command = shlex.split(re.search(r"^ExecReload=(.*)$", service, re.MULTILINE)[1])  # type: ignore[index]
    with DaemonProcess(short_dir / "vtd.sock", short_dir / "data") as daemon:
        assert daemon.process is not None
        empty = short_dir / "empty-path"
        empty.mkdir()
        env = {"MAINPID": str(daemon.process.pid), "PATH": str(empty)}
        subprocess.run(command, env=env, check=True, timeout=30)
        wait_until(lambda: "received SIGHUP" in daemon.stderr(), message="the reload")
        assert answers(daemon.socket_path)
        assert daemon.stop() == 0


def _pings(client: Client) -> bool:
    try:
        return client.ping() == "Pong!"
    except Busy:  # the startup probe's place may not be free yet
        return False


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("bogus = 1\n", "unknown setting 'bogus'"),
        ("log-level = 'loud'\n", "log-level"),
        ("not toml", "not valid TOML"),
    ],
)
def test_bad_config_file_is_one_line_and_exit_2(short_dir: Path, text: str, fragment: str) -> None:
    config = short_dir / "bad.toml"
    config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "vtd", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert fragment in result.stderr


def test_the_repository_units_are_the_rendered_ones() -> None:
    for user, directory in ((False, REPO / "systemd"), (True, REPO / "systemd" / "user")):
        for name, text in units.render(user=user).items():
            assert (directory / name).read_text() == text, f"regenerate {directory / name}"


def test_user_unit_asks_for_no_capability_changes() -> None:
    # A user manager may not drop capabilities: a service asking it to fails
    # at start with 218/CAPABILITIES (seen under a live systemd 252).
    service = units.render(user=True)["vtd.service"]
    assert not re.search(r"^(CapabilityBoundingSet|AmbientCapabilities)=", service, re.MULTILINE)


def test_install_units_writes_exec_start(short_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vtd",
            "install-units",
            "--user",
            "--dest",
            str(short_dir),
            "--exec",
            "/opt/vtd/bin/vtd",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "ExecStart=/opt/vtd/bin/vtd\n" in (short_dir / "vtd.service").read_text()
    assert "systemctl --user" in result.stdout


def test_install_units_refuses_a_vtd_the_system_service_cannot_see(short_dir: Path) -> None:
    # ProtectHome=yes: a vtd in someone's home fails to start with 203/EXEC.
    def install(exec_start: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "vtd", "install-units"),
                *("--dest", str(short_dir), "--exec", exec_start),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )

    refused = install("/home/alice/vtd/.venv/bin/vtd")
    assert refused.returncode == 1
    assert "could not run /home/alice/vtd/.venv/bin/vtd" in refused.stderr
    assert "/opt/vtd/bin/vtd install-units" in refused.stderr
    assert not (short_dir / "vtd.service").exists()
    written = install("/opt/vtd/bin/vtd")
    assert written.returncode == 0, written.stderr
    assert "ExecStart=/opt/vtd/bin/vtd\n" in (short_dir / "vtd.service").read_text()


@needs_analyze
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_units_verify_clean(short_dir: Path, user: bool) -> None:
    for name, text in units.render(user=user, exec_start=sys.executable).items():
        (short_dir / name).write_text(text)
    runtime = short_dir / "xdg"
    runtime.mkdir(mode=0o700)
    command = [
        "systemd-analyze",
        *(["--user"] if user else []),
        "verify",
        "--man=no",
        str(short_dir / "vtd.socket"),
        str(short_dir / "vtd.service"),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_analyze
def test_system_unit_exposure_is_ok_or_better(short_dir: Path) -> None:
    unit = short_dir / "vtd.service"
    unit.write_text(units.render(user=False, exec_start=sys.executable)["vtd.service"])
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for vtd.service: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, match.group(0)
