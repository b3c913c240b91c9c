"""The daemon's lifetime: start in order, serve, stop in order.

Start: data dir, then the socket (so a second daemon fails before touching
any database), then the registry and every registered extension, then
ready. Stop (SIGTERM, SIGINT or ``Daemon.stop``): no more accepting,
in-flight requests answered, writers drained, databases closed, and the
socket file removed last (unless systemd owns it).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
from anyio.abc import SocketListener, TaskStatus

from vtd import __version__, openfiles
from vtd.actor import trim_idle_wals
from vtd.config import Config
from vtd.connection import Limits
from vtd.errors import StartupError
from vtd.health import report_health, watchdog_interval
from vtd.methods import rpc_methods
from vtd.registry import Registry, open_registry
from vtd.server import Server, bind_socket
from vtd.systemd import Notifier, inherited_socket

log = logging.getLogger(__name__)


class Daemon:
    """A running daemon, as handed to whoever started it (the CLI or a test)."""

    def __init__(self, config: Config, server: Server, registry: Registry) -> None:
        self.config = config
        self.server = server
        self.registry = registry

    def stop(self) -> None:
        """Begin a graceful stop; ``run`` returns once it is complete."""
        self.server.stop()


def prepare_data_dir(path: Path) -> None:
    """Create the data dir (mode 0700) if missing; fail with one line if unusable."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create the data dir {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise StartupError(f"the data dir {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"the data dir {path} is not writable")


@contextmanager
def data_dir_held(path: Path) -> Iterator[None]:
    """Hold the data dir for this process alone while the context lasts.

    Two daemons on one data dir would each keep their own registrations and
    their own writer per database. The lock is the kernel's (``flock``), so
    it goes with the process however that ends: a crash leaves nothing stale.
    """
    lock_path = path / "vtd.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot open {lock_path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StartupError(
                f"another vtd (pid {holder}) is using the data dir {path}; stop it, or "
                "choose another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class _SocketFile:
    """The socket file we created, removed on exit only if it is still ours."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode = path.stat().st_ino

    def remove(self) -> None:
        try:
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass


async def run(
    config: Config,
    *,
    handle_signals: bool = False,
    reload: Callable[[], None] | None = None,
    task_status: TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until it is stopped; report the ``Daemon`` once it is ready.

    With ``handle_signals``, SIGTERM and SIGINT stop it gracefully and SIGHUP
    calls ``reload``.
    """
    notifier = Notifier(os.environ)
    prepare_data_dir(config.data_dir)
    with data_dir_held(config.data_dir):
        open_files = openfiles.raise_limit()
        if open_files < config.max_connections + openfiles.SPARE:
            log.warning(
                "the open-file limit (%d) is below --max-connections (%d) plus room for databases",
                open_files,
                config.max_connections,
            )
        socket_file: _SocketFile | None = None
        if config.socket_path is None:
            raw = inherited_socket(os.environ)
            if raw is None:
                raise StartupError("no socket path was given and systemd passed no socket")
            where = f"the socket passed by systemd ({raw.getsockname() or 'unnamed'})"
        else:
            raw = bind_socket(config.socket_path, config.socket_mode)
            socket_file = _SocketFile(config.socket_path)
            where = str(config.socket_path)
        try:
            listener = await SocketListener.from_socket(raw)
            async with open_registry(config.data_dir) as registry:
                await _serve(
                    config, listener, registry, notifier, where, handle_signals, reload, task_status
                )
        finally:
            if socket_file is not None:
                socket_file.remove()
            notifier.close()
        log.info("stopped")


async def _serve(
    config: Config,
    listener: SocketListener,
    registry: Registry,
    notifier: Notifier,
    where: str,
    handle_signals: bool,
    reload: Callable[[], None] | None,
    task_status: TaskStatus[Daemon],
) -> None:
    limits = Limits(config.max_message, config.max_in_flight, config.line_timeout)
    server = Server(
        listener,
        registry,
        rpc_methods(),
        limits,
        max_connections=config.max_connections,
        shutdown_timeout=config.shutdown_timeout,
    )
    daemon = Daemon(config, server, registry)
    async with anyio.create_task_group() as tg:
        if handle_signals:
            tg.start_soon(_handle_signals, daemon, reload)
        count = len(registry.ids())
        log.info(
            "vtd %s ready on %s (data dir %s, %d extension%s)",
            __version__,
            where,
            config.data_dir,
            count,
            "" if count == 1 else "s",
        )
        notifier.send("READY=1", f"STATUS=serving {count} extensions")
        tg.start_soon(trim_idle_wals, registry.writers)
        if notifier.enabled:
            tg.start_soon(
                report_health,
                notifier,
                watchdog_interval(os.environ),
                registry.writers,
                lambda: (
                    f"serving {len(registry.ids())} extensions, "
                    f"{server.connection_count} connections"
                ),
            )
        task_status.started(daemon)
        await server.run()
        notifier.send("STOPPING=1", "STATUS=stopping: draining writes")
        tg.cancel_scope.cancel()


async def _handle_signals(daemon: Daemon, reload: Callable[[], None] | None) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("received SIGHUP; reloading the configuration")
                if reload is not None:
                    reload()
                continue
            log.info("received %s; stopping gracefully", signal.Signals(signum).name)
            daemon.stop()
            return
