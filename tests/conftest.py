"""Shared fixtures: a real daemon on a real socket, in-process or as a subprocess."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.wire import DaemonProcess, Wire
from vtd.config import Config
from vtd.daemon import Daemon, run


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short temp dir: Unix socket paths must stay under ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="vtd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(short_dir: Path) -> Config:
    return Config(socket_path=short_dir / "vtd.sock", data_dir=short_dir / "data")


class RunningDaemon:
    """An in-process daemon and the means to talk to it."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.config = daemon.config
        assert daemon.config.socket_path is not None
        self.socket_path: Path = daemon.config.socket_path

    async def connect(self) -> Wire:
        return await Wire.connect(self.socket_path)


async def start_daemon(config: Config, tg: Any) -> RunningDaemon:
    daemon: Daemon = await tg.start(run, config)
    return RunningDaemon(daemon)


@pytest.fixture
async def vtd(config: Config) -> AsyncIterator[RunningDaemon]:
    """A daemon running in this test's event loop; stopped gracefully afterwards."""
    async with anyio.create_task_group() as tg:
        running = await start_daemon(config, tg)
        yield running
        running.daemon.stop()


@pytest.fixture
async def client(vtd: RunningDaemon) -> AsyncIterator[Wire]:
    async with await vtd.connect() as wire:
        yield wire


@pytest.fixture
async def ext(client: Wire) -> str:
    """A registered extension with character c1 and its instance i1."""
    await client.seed("ext", "c1", "i1", name="Alice")
    return "ext"


@pytest.fixture
def daemon_process(short_dir: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(short_dir / "vtd.sock", short_dir / "data")
    with process:
        yield process


def with_limits(config: Config, **changes: Any) -> Config:
    return replace(config, **changes)


@pytest.fixture(scope="module")
def module_daemon() -> Iterator[DaemonProcess]:
    """One subprocess daemon shared by a module's tests (each uses its own extension)."""
    path = Path(tempfile.mkdtemp(prefix="vtd-", dir="/tmp"))
    with DaemonProcess(path / "vtd.sock", path / "data") as process:
        yield process
    shutil.rmtree(path, ignore_errors=True)
