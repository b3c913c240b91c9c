"""The client's exception tree: transport failures and daemon errors.

``VtdError`` is the root. ``TransportError`` covers reaching the daemon
(``DaemonUnavailable``, ``ConnectionLost``, ``CallTimeout``); ``RpcError``
covers errors the daemon answered, one subclass per protocol code, each
built by ``error_from_response`` from the error object on the wire.
"""

from __future__ import annotations

import errno
from typing import Any


class VtdError(Exception):
    """Root of every error this package raises."""


class TransportError(VtdError):
    """The daemon could not be reached, or the connection failed mid-call."""


START_HINT = (
    "Is the daemon running? Start it with `vtd` (or `systemctl --user start vtd.socket`), "
    "or point the client at its socket (socket=, vtctl --socket, or VTD_SOCKET)."
)
DENIED_HINT = (
    "The socket's mode keeps this user out: connect as the daemon's user, or let a "
    "group in (vtd --socket-mode 0660, or SocketGroup= in a drop-in for vtd.socket)."
)
FOREIGN_HINT = (
    "Remove that directory if nobody you trust made it, or point the client at "
    "vtd's socket (socket=, vtctl --socket, or VTD_SOCKET)."
)


class DaemonUnavailable(TransportError):
    """Nothing answers on the socket; the message names the path, why, and what to do."""

    def __init__(self, socket_path: str, reason: str, hint: str = START_HINT) -> None:
        super().__init__(f"cannot connect to vtd at {socket_path}: {reason}. {hint}")
        self.socket_path = socket_path
        self.reason = reason

    @classmethod
    def from_os_error(cls, socket_path: str, exc: OSError) -> DaemonUnavailable:
        """The error for a failed connect: what to do depends on why it failed."""
        denied = exc.errno in (errno.EACCES, errno.EPERM)
        return cls(socket_path, exc.strerror or str(exc), DENIED_HINT if denied else START_HINT)


class ConnectionLost(TransportError):
    """The connection dropped while a call was in flight; the call was not resent."""


class CallTimeout(TransportError):
    """The daemon did not answer within the client's timeout."""


class RpcError(VtdError):
    """An error the daemon answered: ``code``, ``message`` and ``data`` as on the wire."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data if isinstance(data, dict) else {}


class ProtocolError(RpcError):
    """The request itself was malformed: parse error, invalid request (-32700, -32600)."""


class MethodNotFound(ProtocolError):
    """The daemon has no such method (-32601): a typo, or an older daemon."""


class InvalidParams(RpcError):
    """A param broke the protocol's rules (-32602); ``field`` names it, ``reason`` says why."""

    @property
    def field(self) -> str | None:
        """The top-level param at fault."""
        return self.data.get("field")

    @property
    def reason(self) -> str | None:
        """Which element was wrong, and why."""
        return self.data.get("reason")


class InternalError(RpcError):
    """The daemon failed unexpectedly (-32603); its log has the details."""


class NotRegistered(RpcError):
    """The extension is not registered (-32001): call ``register`` first."""

    @property
    def extension_id(self) -> str | None:
        """The extension that is not registered."""
        return self.data.get("extensionId")


class NotFound(RpcError):
    """A character, instance or key does not exist (-32002)."""

    @property
    def kind(self) -> str | None:
        """``"character"``, ``"instance"`` or ``"key"``."""
        return self.data.get("kind")

    @property
    def id(self) -> str | None:
        """The id (or key) that was not found."""
        return self.data.get("id")

    @property
    def instance_id(self) -> str | None:
        """For a missing key: the instance it was looked up in."""
        return self.data.get("instanceId")


class Busy(RpcError):
    """The daemon is at a limit or shutting down (-32003); retry later."""


class StorageUnavailable(RpcError):
    """The extension's storage failed (-32004): disk full, I/O error, damaged file."""

    @property
    def extension_id(self) -> str | None:
        """The extension whose storage failed."""
        return self.data.get("extensionId")

    @property
    def reason(self) -> str | None:
        """What is wrong with the storage."""
        return self.data.get("reason")


_BY_CODE: dict[int, type[RpcError]] = {
    -32700: ProtocolError,
    -32600: ProtocolError,
    -32601: MethodNotFound,
    -32602: InvalidParams,
    -32603: InternalError,
    -32001: NotRegistered,
    -32002: NotFound,
    -32003: Busy,
    -32004: StorageUnavailable,
}


def error_from_response(error: Any) -> RpcError:
    """The exception for a JSON-RPC error object, by its code."""
    if not isinstance(error, dict):
        return ProtocolError(0, f"malformed error object {error!r}")
    code = error.get("code", 0)
    cls = _BY_CODE.get(code, RpcError)
    return cls(code, str(error.get("message", "error")), error.get("data"))
