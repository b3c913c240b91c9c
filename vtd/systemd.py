"""The small systemd protocols vtd speaks, without any dependency.

``inherited_socket`` implements ``sd_listen_fds``: the listening socket
systemd passed in (socket activation). ``Notifier`` implements
``sd_notify``: readiness, status lines, stopping, and watchdog pings sent
as datagrams to ``$NOTIFY_SOCKET``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

from vtd.errors import StartupError

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3


def inherited_socket(env: MutableMapping[str, str]) -> socket.socket | None:
    """The listening Unix stream socket systemd passed, or ``None`` if there is none.

    Follows ``sd_listen_fds``: only when ``LISTEN_PID`` is this process; the
    variables are removed so child processes don't take them as theirs. With
    several sockets, the one named ``vtd`` in ``LISTEN_FDNAMES`` wins, else
    the first.
    """
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    names = env.get("LISTEN_FDNAMES", "")
    for variable in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(variable, None)
    if pid != str(os.getpid()) or not count:
        return None
    try:
        n = int(count)
    except ValueError:
        raise StartupError(f"LISTEN_FDS={count!r} is not a number") from None
    if n < 1:
        return None
    labels = names.split(":") if names else []
    fd = SD_LISTEN_FDS_START
    if "vtd" in labels[:n]:
        fd += labels.index("vtd")
    for other in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n):
        if other != fd:
            os.set_inheritable(other, False)
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise StartupError(f"the socket systemd passed (fd {fd}) is not a Unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise StartupError(f"the socket systemd passed (fd {fd}) is not listening")
    os.set_inheritable(fd, False)
    return sock


class Notifier:
    """Sends ``sd_notify`` messages; does nothing when ``NOTIFY_SOCKET`` is unset."""

    def __init__(self, env: MutableMapping[str, str]) -> None:
        address = env.pop("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        elif address:
            log.warning("NOTIFY_SOCKET=%r is not a Unix socket path; not notifying", address)
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._socket is not None

    def send(self, *fields: str) -> None:
        """Send ``KEY=value`` fields in one datagram; failures are logged, never raised."""
        if self._socket is None or self._address is None:
            return
        try:
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.warning("cannot notify the service manager: %s", exc.strerror or exc)

    def close(self) -> None:
        """Close the notification socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
