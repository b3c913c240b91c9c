"""Telling systemd how the daemon is: watchdog pings and status lines.

``report_health`` pings the watchdog every half of ``WATCHDOG_USEC`` for as
long as the event loop runs (it is the one sending) and no writer has been
stuck on one batch for a whole watchdog period: a writer stuck that long
(a hung disk, a lock held elsewhere) stops the pings, so systemd restarts
the daemon. It also keeps ``STATUS=`` current for ``systemctl status``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

import anyio

from vtd.actor import WriterActor
from vtd.systemd import Notifier

log = logging.getLogger(__name__)

STATUS_INTERVAL = 2.0


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or ``None`` if not asked for."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        microseconds = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number; not pinging the watchdog", usec)
        return None
    return microseconds / 2_000_000 if microseconds > 0 else None


def stuck_writers(writers: list[WriterActor], limit: float) -> list[str]:
    """Names of writers busy with one batch for longer than ``limit`` seconds."""
    now = time.monotonic()  # the clock of ``busy_since``
    return [
        writer.name
        for writer in writers
        if writer.busy_since is not None and now - writer.busy_since > limit
    ]


async def report_health(
    notifier: Notifier,
    interval: float | None,
    writers: Callable[[], list[WriterActor]],
    status: Callable[[], str],
) -> None:
    """Ping the watchdog while healthy and keep the status line current; runs until cancelled."""
    # A long watchdog interval (30 s in the units) must not leave the status
    # line that stale: tick at the shorter of the two.
    tick = min(interval, STATUS_INTERVAL) if interval is not None else STATUS_INTERVAL
    last_status = ""
    reported_stuck: list[str] = []
    while True:
        if interval is not None:
            stuck = stuck_writers(writers(), interval * 2)
            if not stuck:
                notifier.send("WATCHDOG=1")
            elif stuck != reported_stuck:
                log.error(
                    "writer stuck for over %.1fs: %s; not pinging the watchdog",
                    interval * 2,
                    ", ".join(stuck),
                )
            reported_stuck = stuck
        line = status()
        if line != last_status:
            notifier.send(f"STATUS={line}")
            last_status = line
        await anyio.sleep(tick)
