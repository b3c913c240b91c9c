"""Killing the daemon mid-write and checking that nothing acknowledged is lost.

Shared by the quick crash test in the normal suite and the long crash-loop
run (``pytest -m reliability``).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from tests.wire import DaemonProcess, call_sync, seed, wait_until

EXTENSION = "crash"
WINDOW = 8


class Writer(threading.Thread):
    """One connection that pipelines ``data.set`` calls and records which were acknowledged."""

    def __init__(
        self, socket_path: Path, name: str, round_number: int, expected: frozenset[int]
    ) -> None:
        super().__init__(daemon=True)
        self.socket_path = socket_path
        self.prefix = f"r{round_number}-{name}"
        self.expected = expected
        self.acknowledged: dict[str, int] = {}
        self.errors: list[object] = []

    def run(self) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(30)
                sock.connect(str(self.socket_path))
                self._write(sock)
        except OSError:
            pass  # the daemon was killed: expected

    def _write(self, sock: socket.socket) -> None:
        sent: dict[int, str] = {}
        buffer = b""
        n = 0
        while True:
            while len(sent) < WINDOW:
                key = f"{self.prefix}-{n}"
                params = {"extensionId": EXTENSION, "id": "i", "key": key, "value": n}
                message = {"jsonrpc": "2.0", "id": n, "method": "data.set", "params": params}
                sock.sendall(json.dumps(message).encode() + b"\n")
                sent[n] = key
                n += 1
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                reply = json.loads(line)
                key = sent.pop(reply["id"])
                if "result" in reply:
                    self.acknowledged[key] = reply["id"]
                elif reply["error"]["code"] not in self.expected:
                    self.errors.append(reply)


def integrity_ok(path: Path) -> bool:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def prepare(daemon: DaemonProcess) -> None:
    seed(daemon.socket_path, EXTENSION)


def kill_during_writes(
    daemon: DaemonProcess,
    round_number: int,
    *,
    connections: int = 8,
    writes_before_kill: int = 200,
    expected_errors: frozenset[int] = frozenset(),
) -> dict[str, int]:
    """Run writers, SIGKILL the daemon once enough writes were acknowledged; return them all.

    A write refused with one of ``expected_errors`` is not acknowledged, and
    not a failure; any other error is.
    """
    writers = [
        Writer(daemon.socket_path, f"w{k}", round_number, expected_errors)
        for k in range(connections)
    ]
    for writer in writers:
        writer.start()
    wait_until(
        lambda: sum(len(w.acknowledged) for w in writers) >= writes_before_kill,
        timeout=60,
        message=f"{writes_before_kill} acknowledged writes",
    )
    daemon.kill()
    for writer in writers:
        writer.join(30)
        assert not writer.is_alive()
        assert writer.errors == []
    acknowledged: dict[str, int] = {}
    for writer in writers:
        acknowledged.update(writer.acknowledged)
    return acknowledged


def missing_after_restart(daemon: DaemonProcess, acknowledged: dict[str, int]) -> dict[str, int]:
    """Acknowledged writes that the restarted daemon does not have."""
    stored = call_sync(daemon.socket_path, "data.get", extensionId=EXTENSION, id="i")
    return {key: value for key, value in acknowledged.items() if stored.get(key) != value}


def database_file(daemon: DaemonProcess) -> Path:
    return daemon.data_dir / "extensions" / f"{EXTENSION}.sqlite3"
