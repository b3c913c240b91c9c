"""Finding the daemon's socket, exactly as the daemon does (minus systemd)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vtd_client._errors import FOREIGN_HINT, DaemonUnavailable


def socket_path(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``explicit``, else ``VTD_SOCKET``, else the runtime dir, else ``/tmp/vtd-$UID``."""
    env = os.environ if env is None else env
    if explicit is not None:
        return Path(explicit)
    if env.get("VTD_SOCKET"):
        return Path(env["VTD_SOCKET"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "vtd" / "vtd.sock"
    return _fallback_dir() / "vtd.sock"


def _fallback_dir() -> Path:
    return Path(f"/tmp/vtd-{os.getuid()}")


def refuse_foreign_fallback(path: Path) -> None:
    """Raise ``DaemonUnavailable`` if ``path`` lies in a ``/tmp`` fallback dir another user made.

    Anyone may create ``/tmp/vtd-$UID`` before vtd does, and put a socket
    of their own there; the daemon refuses such a directory, and so does
    the client.
    """
    if path.parent != _fallback_dir():
        return
    try:
        owner = path.parent.stat().st_uid
    except OSError:
        return  # nothing there: connecting fails on its own
    if owner != os.getuid():
        raise DaemonUnavailable(
            str(path),
            f"{path.parent} belongs to uid {owner}, not to you; refusing to connect",
            FOREIGN_HINT,
        )
