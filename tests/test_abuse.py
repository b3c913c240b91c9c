"""Hostile load: connection floods and clients that never read."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.wire import DaemonProcess, RpcFailed, call_sync, seed, wait_until

PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _served_connection(path: Path) -> socket.socket:
    """A connection that was answered; retried while an earlier probe's place is freed."""
    served: list[socket.socket] = []

    def attempt() -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(PING)
        if b"Pong!" in _read_line(sock):
            served.append(sock)
            return True
        sock.close()
        return False

    wait_until(attempt, message="a place among the connections")
    return served[0]


@pytest.fixture
def many_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2300:
        pytest.skip(f"the open-file hard limit ({hard}) is too low for 1,025 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("many_files")
def test_1024_connections_are_served_and_the_1025th_is_told_busy(
    daemon_process: DaemonProcess,
) -> None:
    assert daemon_process.process is not None
    pid = daemon_process.process.pid
    before = _rss_kib(pid)
    held: list[socket.socket] = []
    try:
        held.extend(_served_connection(daemon_process.socket_path) for _ in range(1024))
        per_connection = (_rss_kib(pid) - before) / 1024
        assert per_connection < 64, f"{per_connection:.1f} KiB per idle connection"
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.settimeout(30)
        extra.connect(str(daemon_process.socket_path))
        reply = json.loads(_read_line(extra))
        assert reply["id"] is None
        assert reply["error"]["code"] == -32003
        assert extra.recv(1) == b""  # and closed
        extra.close()
    finally:
        for sock in held:
            sock.close()

    def serves_again() -> bool:
        try:
            return call_sync(daemon_process.socket_path, "ping")["message"] == "Pong!"
        except RpcFailed:  # busy until the daemon has seen the flood's hang-ups
            return False

    wait_until(serves_again, message="the daemon to serve again once the flood is gone")


def test_100_clients_that_never_read_cannot_grow_memory_without_bound(
    daemon_process: DaemonProcess,
) -> None:
    path = daemon_process.socket_path
    seed(path, "greedy")
    call_sync(path, "data.set", extensionId="greedy", id="i", key="k", value="v" * 4000)
    assert daemon_process.process is not None
    pid = daemon_process.process.pid
    before = _rss_kib(pid)
    request = (
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "data.get",
                "params": {"extensionId": "greedy", "id": "i"},
            }
        ).encode()
        + b"\n"
    )
    flood = request * 20_000  # about 2 MB of requests whose answers are never read
    stop = threading.Event()
    sent = [0] * 100
    throttled: set[int] = set()

    def greedy(index: int) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.settimeout(0.5)
            view = memoryview(flood)
            while not stop.is_set() and sent[index] < len(flood):
                try:
                    sent[index] += sock.send(view[sent[index] : sent[index] + 65536])
                except TimeoutError:
                    throttled.add(index)  # the daemon stopped reading: backpressure

    threads = [threading.Thread(target=greedy, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    try:
        # While they push, a polite client is answered.
        for n in range(20):
            call_sync(path, "data.set", extensionId="greedy", id="i", key="n", value=n, timeout=30)
        wait_until(
            lambda: len(throttled) == 100,
            timeout=120,
            message="every greedy client to be throttled",
        )
        grown_mib = (_rss_kib(pid) - before) / 1024
        assert grown_mib < 200, f"RSS grew {grown_mib:.0f} MiB"
        assert sum(sent) < len(flood) * 100, "the daemon read everything: no backpressure"
        print(f"RSS grew {grown_mib:.1f} MiB with 100 clients that never read")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert call_sync(path, "ping")["message"] == "Pong!"
    # The clients hung up with thousands of requests unread: nothing went wrong.
    assert "Traceback" not in daemon_process.stderr()


def _first_refused_register(path: Path, prefix: str, attempts: int) -> dict[str, Any]:
    """Register ``prefix0``, ``prefix1``... until one is refused; that refusal's error."""
    for n in range(attempts):
        try:
            call_sync(path, "register", extensionId=f"{prefix}{n}")
        except RpcFailed as failed:
            return failed.error
    raise AssertionError(f"all {attempts} registers succeeded")


def test_running_out_of_open_files_refuses_clearly_and_never_stops_the_daemon(
    daemon_process: DaemonProcess,
) -> None:
    path = daemon_process.socket_path
    assert daemon_process.process is not None
    pid = daemon_process.process.pid
    seed(path, "first")
    limit = 160
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))

    # New extensions are refused while the daemon still has files for connections.
    refusal = _first_refused_register(path, "many", limit)
    assert refusal["code"] == -32004
    refused = refusal["data"]["extensionId"]
    assert refusal["data"]["reason"].startswith("vtd is short of open files")
    assert "LimitNOFILE=" in refusal["data"]["reason"]
    assert {"extensionId": refused} not in call_sync(path, "extensions.list")
    call_sync(path, "data.set", extensionId="first", id="i", key="k", value=1)

    # Connections past the limit wait, unaccepted; the daemon does not stop.
    held: list[socket.socket] = []
    try:
        for _ in range(limit):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                sock.connect(str(path))
            except OSError:  # the listening socket's backlog is full
                sock.close()
                break
            held.append(sock)
        wait_until(
            lambda: "cannot accept a connection: Too many open files" in daemon_process.stderr(),
            message="the daemon to run out of files for connections",
        )
    finally:
        for sock in held:
            sock.close()
    assert daemon_process.process.poll() is None

    def serves_again() -> bool:
        try:
            return call_sync(path, "data.getKey", extensionId="first", id="i", key="k") == {"k": 1}
        except (RpcFailed, OSError):
            return False

    wait_until(serves_again, message="the daemon to serve again once files are free")
    # accept() failed every 0.1 s while files were short, but was logged once.
    assert daemon_process.stderr().count("cannot accept a connection") == 1


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A cgroup of its own with the pids controller, to cap a daemon's threads."""
    if os.geteuid() != 0:
        pytest.skip("capping a process's threads with a cgroup needs root")
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        group = base / f"vtd-test-{os.getpid()}"
        try:
            group.mkdir()
        except OSError:
            continue
        if (group / "pids.max").exists():
            break
        group.rmdir()
    else:
        pytest.skip("no cgroup with the pids controller can be made here")
    probe = subprocess.Popen(["sleep", "60"])
    try:
        (group / "cgroup.procs").write_text(str(probe.pid))
    except OSError as exc:
        group.rmdir()
        pytest.skip(f"cannot move a process into a pids cgroup here: {exc}")
    finally:
        probe.kill()
        probe.wait()
    try:
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            (group.parent / "cgroup.procs").write_text(pid)
        group.rmdir()


def test_running_out_of_threads_refuses_clearly_and_stops_cleanly(
    daemon_process: DaemonProcess, pids_cgroup: Path
) -> None:
    path = daemon_process.socket_path
    assert daemon_process.process is not None
    pid = daemon_process.process.pid
    seed(path, "first")
    tasks = len(os.listdir(f"/proc/{pid}/task"))
    # Room for four more extensions (two threads each) and one thread more: the
    # fifth starts its reader, then cannot start its writer.
    (pids_cgroup / "pids.max").write_text(str(tasks + 9))
    (pids_cgroup / "cgroup.procs").write_text(str(pid))

    refusal = _first_refused_register(path, "threads", 20)
    assert refusal["code"] == -32004
    assert refusal["data"]["reason"].startswith("vtd cannot start another thread")
    assert "TasksMax=" in refusal["data"]["reason"]
    assert {"extensionId": refusal["data"]["extensionId"]} not in call_sync(path, "extensions.list")
    call_sync(path, "data.set", extensionId="first", id="i", key="k", value=1)
    assert call_sync(path, "data.getKey", extensionId="first", id="i", key="k") == {"k": 1}
    assert daemon_process.stop() == 0  # nothing half-started is left to wait for

    # Restarted with too few threads for what is registered: one line, status 1.
    (pids_cgroup / "pids.max").write_text("4")
    join_then_run = f'echo $$ > {pids_cgroup / "cgroup.procs"} && exec "$@"'
    started = subprocess.run(
        ["sh", "-c", join_then_run, "sh", *daemon_process.command()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1
    [line] = started.stderr.strip().splitlines()
    assert "cannot open the 5 registered extensions: vtd cannot start another thread" in line
