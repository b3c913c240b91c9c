"""A black-box client for tests, written only from the protocol page.

It speaks newline-delimited JSON-RPC over a Unix socket and nothing more,
so tests exercise the daemon exactly as any client would.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

MAX_LINE = 64 * 1024 * 1024

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
"""A timestamp as the protocol writes it: ISO 8601 in UTC, to the millisecond."""

TOO_BIG_TO_SEND = {f"k{n}": "v" * 1000 for n in range(8000)}
"""About 8 MB of data: more than a socket takes while its peer reads nothing,
so a send of it blocks until it is cut short."""


class RpcFailed(Exception):
    """A call answered with an error object."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['code']}: {error['message']}")
        self.error = error
        self.code = error["code"]
        self.data = error.get("data")


def request(method: str, params: dict[str, Any], id: Any = None) -> dict[str, Any]:
    """A request object; ``id=None`` makes it a notification."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if id is not None:
        message["id"] = id
    return message


def nested(depth: int) -> object:
    """A value nested ``depth`` levels deep: 1 inside that many lists."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


class Wire:
    """One async connection: send lines, read lines, or make calls."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, path: Path | str) -> Wire:
        return cls(await anyio.connect_unix(path))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> Wire:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def send(self, message: Any) -> None:
        await self.stream.send(json.dumps(message).encode() + b"\n")

    async def receive(self) -> Any:
        line = await self.reader.receive_until(b"\n", MAX_LINE)
        return json.loads(line)

    async def response(self, message: Any) -> Any:
        await self.send(message)
        return await self.receive()

    async def call(self, method: str, /, **params: Any) -> Any:
        """Call and return the result, or raise ``RpcFailed``."""
        call_id = next(self._ids)
        reply = await self.response(request(method, params, call_id))
        assert reply["id"] == call_id, reply
        if "error" in reply:
            raise RpcFailed(reply["error"])
        return reply["result"]

    async def seed(
        self, extension: str, character: str = "c", instance: str = "i", name: str | None = None
    ) -> None:
        """As ``seed``, on this connection: register ``extension``, one character, one instance."""
        await self.call("register", extensionId=extension)
        named = {} if name is None else {"name": name}
        await self.call("characters.upsert", extensionId=extension, id=character, **named)
        await self.call(
            "instances.upsert", extensionId=extension, id=instance, characterId=character
        )

    async def error(self, method: str, /, **params: Any) -> dict[str, Any]:
        """Call expecting an error; return the error object."""
        try:
            result = await self.call(method, **params)
        except RpcFailed as exc:
            return exc.error
        raise AssertionError(f"{method} succeeded with {result!r}; an error was expected")


def call_sync(path: Path | str, method: str, /, timeout: float = 10, **params: Any) -> Any:
    """One blocking call on a fresh connection (for subprocess tests)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request(method, params, 1)).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("daemon closed the connection")
            data += chunk
    reply = json.loads(data)
    if "error" in reply:
        raise RpcFailed(reply["error"])
    return reply["result"]


def seed(path: Path | str, extension: str, character: str = "c", instance: str = "i") -> None:
    """Register ``extension`` and give it one character with one instance."""
    call_sync(path, "register", extensionId=extension)
    call_sync(path, "characters.upsert", extensionId=extension, id=character)
    call_sync(path, "instances.upsert", extensionId=extension, id=instance, characterId=character)


def wait_until(condition: Any, timeout: float = 15, message: str = "condition") -> None:
    """Poll ``condition`` until true or fail after ``timeout`` seconds (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.01)


async def eventually(condition: Any, within: float = 15, message: str = "condition") -> None:
    """As ``wait_until``, for a test whose event loop must go on meanwhile."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await anyio.sleep(0.01)


def answers(path: Path) -> bool:
    try:
        return call_sync(path, "probe", timeout=1)["ok"] is True
    except (OSError, RpcFailed):
        return False


class DaemonProcess:
    """``python -m vtd`` in a subprocess, for signal, crash and restart tests."""

    def __init__(
        self,
        socket_path: Path,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ):
        self.socket_path = socket_path
        self.data_dir = data_dir
        self.args = list(args)
        self._command = command
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="vtd-log-"))
        weakref.finalize(self, shutil.rmtree, self._log_dir, True)
        self.log_path = self._log_dir / "daemon-0.log"
        self._starts = 0

    def command(self) -> list[str]:
        """The command line: given at construction, else vtd on this socket and data dir."""
        if self._command is not None:
            return self._command
        return [
            sys.executable,
            "-m",
            "vtd",
            "--socket",
            str(self.socket_path),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]

    def start(self, wait: bool = True) -> DaemonProcess:
        """Start the daemon; with ``wait``, return once it answers ``probe``."""
        self._starts += 1
        self.log_path = self._log_dir / f"daemon-{self._starts}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), env=self.env, stdout=subprocess.DEVNULL, stderr=log
            )
        process = self.process
        if wait:
            wait_until(
                lambda: answers(self.socket_path) or process.poll() is not None,
                message="the daemon to answer probe",
            )
            if process.poll() is not None:
                raise AssertionError(f"daemon exited: {self.stderr()}")
        return self

    def stderr(self) -> str:
        """What the daemon logged since its last start."""
        return self.log_path.read_text()

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait; answer the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 20) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def __enter__(self) -> DaemonProcess:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
