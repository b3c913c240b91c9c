"""The daemon's own error hierarchy.

These errors describe what went wrong in the daemon's terms. The storage
layer and the registry raise them; ``vtd.methods`` turns each into a JSON-RPC
error at exactly one boundary, so no other module knows wire codes.
``MustWait`` stands apart: no client ever sees it.
"""

from __future__ import annotations

from typing import Literal

NotFoundKind = Literal["character", "instance", "key"]


class VtdDaemonError(Exception):
    """Root of every error the daemon raises on purpose."""


class InvalidParam(VtdDaemonError):
    """A request parameter breaks the protocol's rules.

    ``field`` is the top-level param at fault; ``reason`` says which element
    and why, in words a caller can act on.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotRegistered(VtdDaemonError):
    """The extension named by a request has not been registered."""

    def __init__(self, extension_id: str) -> None:
        super().__init__(f"extension {extension_id!r} is not registered")
        self.extension_id = extension_id


class NotFound(VtdDaemonError):
    """A character, instance or data key does not exist."""

    def __init__(self, kind: NotFoundKind, id: str, *, instance_id: str | None = None) -> None:
        super().__init__(f"{kind} {id!r} not found")
        self.kind: NotFoundKind = kind
        self.id = id
        self.instance_id = instance_id


class Busy(VtdDaemonError):
    """The daemon is shutting down or over a limit; the caller should retry later."""


class StorageUnavailable(VtdDaemonError):
    """An extension's database cannot be used right now (disk full, I/O error, damage)."""

    def __init__(self, extension_id: str, reason: str) -> None:
        super().__init__(f"storage for {extension_id!r} unavailable: {reason}")
        self.extension_id = extension_id
        self.reason = reason


class OutOfThreads(VtdDaemonError):
    """The system refused to start another thread (a limit on tasks was reached)."""


class StartupError(VtdDaemonError):
    """The daemon cannot start; the message is the one line shown to the operator."""


class MustWait(Exception):
    """A request cannot be answered without waiting; answer it from a task instead.

    Raised where a request is handled at once on the event loop's thread (a
    point read, a write handed to its writer) and would have to wait: for an
    earlier write, a lock, a file not yet open, or room in a writer's queue.
    """
