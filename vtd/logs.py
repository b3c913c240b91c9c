"""Logging to stderr, shaped for a terminal or for journald.

Under systemd (``JOURNAL_STREAM`` set) lines carry no timestamp, since
journald adds one, and start with a ``<N>`` syslog priority so that
``journalctl -p err`` finds errors.
"""

from __future__ import annotations

import logging
import os
import sys

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
