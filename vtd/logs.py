"""Logging to stderr, shaped for a terminal or for journald.

Under systemd (``JOURNAL_STREAM`` set) lines carry no timestamp, since
journald adds one, and start with a ``<N>`` syslog priority so that
``journalctl -p err`` finds errors.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority, as journald's stream parser expects."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITIES.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def configure(level: str) -> None:
    """Send the daemon's logs to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("jsonrpcserver").setLevel(logging.CRITICAL)


class OccasionalWarning:
    """A warning that repeats at most once per ``interval`` seconds.

    A condition that recurs many times a second (a client retrying against a
    full daemon, accept() failing while files are short) must not flood the
    journal; each warning logged counts the occurrences left out since the
    one before, so nothing goes unreported.
    """

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._logger = logger
        self.interval = interval
        self._logged_at = -interval
        self._left_out = 0

    def warn(self, message: str, *args: object) -> None:
        """Log ``message % args`` now, or count it if one was logged within the interval."""
        now = time.monotonic()
        if now - self._logged_at < self.interval:
            self._left_out += 1
            return
        if self._left_out:
            message += f" ({self._left_out} more like this since the last such warning)"
        self._logger.warning(message, *args)
        self._logged_at = now
        self._left_out = 0
