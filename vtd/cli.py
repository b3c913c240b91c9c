"""The ``vtd`` command: parse the settings, set up logging, run the daemon."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import anyio

from vtd import config, daemon, logs
from vtd.errors import StartupError

log = logging.getLogger("vtd")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the daemon; exit 0 after a graceful stop, 1 if it cannot start, 2 on bad usage."""
    settings = config.load(argv)
    logs.configure(settings.log_level)
    try:
        anyio.run(lambda: daemon.run(settings, handle_signals=True), backend="asyncio")
    except* StartupError as group:
        log.error("cannot start: %s", group.exceptions[0])
        sys.exit(1)
