"""The listening socket and the accept loop.

``bind_socket`` creates the socket file safely: a live daemon's socket is
never taken over, a stale one is replaced, and a path that is not a socket
is never deleted. ``Server`` accepts connections up to the limit, serves
each in its own task, and stops in order: no more accepting, in-flight
requests answered (within a bound), then the connections closed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from pathlib import Path

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream

from vtd import rpc
from vtd.codes import BUSY
from vtd.connection import Connection, Limits, finish_gently
from vtd.errors import StartupError
from vtd.logs import OccasionalWarning
from vtd.registry import Registry

log = logging.getLogger(__name__)

_SHORT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""accept() failures that pass once files or memory are freed: wait and accept again."""

WARNINGS_REPEAT_AFTER = 60.0
"""Seconds before a warning of refused connections, or of connections that
cannot be accepted, is logged again: a client that retries in a loop against
a full daemon must not flood the journal."""


def _ensure_socket_dir(directory: Path, socket_mode: int) -> None:
    # Private, but passable by those the socket's mode admits (a group, say):
    # they must reach the socket to connect to it.
    passable = (0o010 if socket_mode & 0o060 else 0) | (0o001 if socket_mode & 0o006 else 0)
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700 | passable)  # whatever the umask
        info = directory.stat()
    except OSError as exc:
        raise StartupError(
            f"cannot create the socket directory {directory}: {exc.strerror}"
        ) from None
    # Whoever owns the directory, or may write in it, can put their own
    # socket in place of vtd's (a directory made in /tmp by another user first).
    if info.st_uid not in (os.getuid(), 0):
        raise StartupError(
            f"the socket directory {directory} belongs to uid {info.st_uid}, not to "
            "vtd's user; refusing to listen there (remove it, or choose --socket)"
        )
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise StartupError(
            f"the socket directory {directory} is writable by other users; refusing "
            f"to listen there (chmod go-w {directory}, or choose --socket)"
        )


def _clear_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: nobody listens there
        log.info("replaced the stale socket file %s", path)
        return
    except OSError as exc:
        raise StartupError(f"cannot check the socket {path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise StartupError(f"another vtd is already listening on {path}")


def bind_socket(path: Path, mode: int) -> socket.socket:
    """A listening Unix socket at ``path`` with file mode ``mode`` from its first moment."""
    _ensure_socket_dir(path.parent, mode)
    _clear_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(previous_umask)
    os.chmod(path, mode)
    sock.listen(4096)
    return sock


def _peer(stream: SocketStream) -> str:
    try:
        raw = stream.extra(SocketAttribute.raw_socket)
        creds = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
    except (OSError, anyio.TypedAttributeLookupError):
        return "peer unknown"
    return f"pid {pid}, uid {uid}, gid {gid}"


class Server:
    """Accepts and serves connections until ``stop()``."""

    def __init__(
        self,
        listener: SocketListener,
        registry: Registry,
        methods: rpc.MethodTables,
        limits: Limits,
        *,
        max_connections: int,
        shutdown_timeout: float,
    ) -> None:
        self._listener = listener
        self._registry = registry
        self._methods = methods
        self._limits = limits
        self._max_connections = max_connections
        self._shutdown_timeout = shutdown_timeout
        self._accepting = anyio.CancelScope()
        self._connections: set[Connection] = set()
        self._accepted = 0
        self._refusal_warning = OccasionalWarning(log, WARNINGS_REPEAT_AFTER)
        self._accept_warning = OccasionalWarning(log, WARNINGS_REPEAT_AFTER)

    @property
    def connection_count(self) -> int:
        """How many connections are open now."""
        return len(self._connections)

    def stop(self) -> None:
        """Begin a graceful stop: accept no more; let open connections finish."""
        self._accepting.cancel()

    async def run(self) -> None:
        """Serve until stopped, then drain the connections (cut off after the timeout)."""
        async with anyio.create_task_group() as tg:
            with self._accepting:
                await self._accept_loop(tg)
            await self._listener.aclose()
            log.info("stopping: finishing %d open connections", len(self._connections))
            for connection in self._connections:
                connection.stop_reading()
            tg.cancel_scope.deadline = anyio.current_time() + self._shutdown_timeout

    async def _accept_loop(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await self._listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                # anyio reports accept()'s OSError as a BrokenResourceError caused by it.
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _SHORT_OF_RESOURCES:
                    raise
                self._accept_warning.warn(
                    "cannot accept a connection: %s; retrying every 0.1 s", cause.strerror
                )
                await anyio.sleep(0.1)
                continue
            self._accepted += 1
            name = f"conn#{self._accepted}"
            if len(self._connections) >= self._max_connections:
                tg.start_soon(self._refuse, stream, name)
            else:
                connection = Connection(stream, self._registry, self._methods, self._limits, name)
                self._connections.add(connection)
                log.debug("%s: connected (%s)", name, _peer(stream))
                tg.start_soon(self._serve, connection)

    async def _serve(self, connection: Connection) -> None:
        try:
            await connection.serve()
        except Exception:
            log.exception("%s: connection failed", connection.name)
        finally:
            self._connections.discard(connection)
            log.debug("%s: closed", connection.name)

    async def _refuse(self, stream: SocketStream, name: str) -> None:
        self._refusal_warning.warn(
            "%s: refused: %d connections are open, the limit (--max-connections)",
            name,
            len(self._connections),
        )
        busy = rpc.error_response(
            BUSY,
            f"Server busy: {self._max_connections} connections are open; retry later",
            {"reason": "too many connections", "limit": self._max_connections},
        )
        async with stream:
            with anyio.move_on_after(1):
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await stream.send(rpc.encode(busy))
            # The client may send its request only now, after the refusal:
            # it must then still read the refusal, not a broken pipe.
            await finish_gently(stream.extra(SocketAttribute.raw_socket))
