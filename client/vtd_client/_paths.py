"""Finding the daemon's socket, exactly as the daemon does (minus systemd)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


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
    return Path(f"/tmp/vtd-{os.getuid()}") / "vtd.sock"
