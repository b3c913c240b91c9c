"""Python clients for vtd, the daemon that stores chat extensions' values.

``Client`` blocks and needs only the standard library; ``AsyncClient`` is
for anyio and asyncio programs (``async with AsyncClient() as client``).
Both find the daemon's socket as the daemon does (``socket=``, else
``VTD_SOCKET``, else ``$XDG_RUNTIME_DIR/vtd/vtd.sock``, else
``/tmp/vtd-$UID/vtd.sock``) and raise the errors below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vtd_client._calls import Call
from vtd_client._errors import (
    Busy,
    CallTimeout,
    ConnectionLost,
    DaemonUnavailable,
    InternalError,
    InvalidParams,
    MethodNotFound,
    NotFound,
    NotRegistered,
    ProtocolError,
    RpcError,
    StorageUnavailable,
    TransportError,
    VtdError,
)
from vtd_client._paths import socket_path
from vtd_client._sync import Client, CrossExtension, Extension
from vtd_client._types import Character, FullCharacter, FullInstance, Instance

if TYPE_CHECKING:
    from vtd_client._async import AsyncClient, AsyncCrossExtension, AsyncExtension

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncCrossExtension",
    "AsyncExtension",
    "Busy",
    "Call",
    "CallTimeout",
    "Character",
    "Client",
    "ConnectionLost",
    "CrossExtension",
    "DaemonUnavailable",
    "Extension",
    "FullCharacter",
    "FullInstance",
    "Instance",
    "InternalError",
    "InvalidParams",
    "MethodNotFound",
    "NotFound",
    "NotRegistered",
    "ProtocolError",
    "RpcError",
    "StorageUnavailable",
    "TransportError",
    "VtdError",
    "socket_path",
]

_ASYNC_NAMES = ("AsyncClient", "AsyncCrossExtension", "AsyncExtension")


def __getattr__(name: str) -> Any:
    # The async client needs anyio; import it only when asked for, so that the
    # blocking client works with the standard library alone.
    if name in _ASYNC_NAMES:
        from vtd_client import _async

        return getattr(_async, name)
    raise AttributeError(f"module 'vtd_client' has no attribute {name!r}")
