"""The ``vtd`` command: parse the settings, set up logging, run the daemon."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

import anyio

from vtd import config, daemon, logs, units
from vtd.errors import StartupError

log = logging.getLogger("vtd")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the daemon; exit 0 after a graceful stop, 1 if it cannot start, 2 on bad usage."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["install-units"]:
        units.main(args[1:])
        return
    settings = config.load(args)

    def reload() -> None:
        """Apply the log level from the flags, environment and config file as they are now."""
        try:
            fresh = config.resolve(vars(config.build_parser().parse_args(args)), os.environ)
        except config.ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        logs.configure(fresh.log_level)
        changed = [
            name
            for name in (
                "socket_path",
                "data_dir",
                "socket_mode",
                "max_message",
                "max_connections",
                "line_timeout",
            )
            if getattr(fresh, name) != getattr(settings, name)
            and not (name == "socket_path" and settings.socket_path is None)
        ]
        log.info("log level is %s", fresh.log_level)
        if changed:
            log.warning("restart vtd to apply the changed %s", ", ".join(changed))

    logs.configure(settings.log_level)
    # Past a file size limit, let writes fail with an error (answered as -32004)
    # instead of the signal killing the daemon.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        anyio.run(
            lambda: daemon.run(settings, handle_signals=True, reload=reload), backend="asyncio"
        )
    except* StartupError as group:
        log.error("cannot start: %s", group.exceptions[0])
        sys.exit(1)
