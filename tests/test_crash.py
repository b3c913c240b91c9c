"""SIGKILL mid-write loses no acknowledged write and never damages a database."""

from __future__ import annotations

import os
import random

import pytest

from tests.crash import (
    database_file,
    integrity_ok,
    kill_during_writes,
    missing_after_restart,
    prepare,
)
from tests.wire import DaemonProcess


def _crash_rounds(daemon: DaemonProcess, rounds: int) -> None:
    prepare(daemon)
    rng = random.Random(int(os.environ.get("VTD_CRASH_SEED", "1")))
    acknowledged: dict[str, int] = {}
    for round_number in range(rounds):
        # Kill at a random moment: after a random number of acknowledged writes.
        writes = rng.randrange(20, 400)
        acknowledged.update(kill_during_writes(daemon, round_number, writes_before_kill=writes))
        assert integrity_ok(database_file(daemon)), (
            f"integrity_check failed in round {round_number}"
        )
        daemon.start()
        assert missing_after_restart(daemon, acknowledged) == {}
    print(f"crash rounds: {rounds}, acknowledged writes checked: {len(acknowledged)}, lost: 0")


def test_sigkill_while_8_connections_write_loses_nothing(daemon_process: DaemonProcess) -> None:
    _crash_rounds(daemon_process, rounds=int(os.environ.get("VTD_CRASH_ROUNDS_QUICK", "3")))


@pytest.mark.reliability
def test_crash_loop(daemon_process: DaemonProcess) -> None:
    _crash_rounds(daemon_process, rounds=int(os.environ.get("VTD_CRASH_ROUNDS", "20")))
