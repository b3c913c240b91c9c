"""SIGKILL mid-write loses no acknowledged write and never damages a database."""

from __future__ import annotations

import os
import random
import threading

import pytest

from tests.crash import (
    EXTENSION,
    database_file,
    integrity_ok,
    kill_during_writes,
    missing_after_restart,
    prepare,
)
from tests.wire import DaemonProcess, RpcFailed, call_sync


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


def test_sigkill_while_the_extension_is_deregistered_and_registered_loses_nothing(
    daemon_process: DaemonProcess,
) -> None:
    # Each deregister closes the extension's file behind the writes queued
    # before it, each register opens it again: an acknowledged write must
    # survive both, and the kill.
    prepare(daemon_process)
    toggles = 0
    failures: list[RpcFailed] = []
    stop = threading.Event()

    def toggle() -> None:
        nonlocal toggles
        try:
            while not stop.is_set():
                for method in ("deregister", "register"):
                    call_sync(daemon_process.socket_path, method, extensionId=EXTENSION)
                toggles += 1
        except OSError:
            pass  # the daemon was killed
        except RpcFailed as exc:
            failures.append(exc)

    toggler = threading.Thread(target=toggle, daemon=True)
    toggler.start()
    try:
        acknowledged = kill_during_writes(
            daemon_process, 0, writes_before_kill=1500, expected_errors=frozenset({-32001})
        )
    finally:
        stop.set()
        toggler.join(30)
    assert failures == []
    assert toggles > 0, "the extension was never deregistered and registered again"
    assert integrity_ok(database_file(daemon_process))
    daemon_process.start()
    call_sync(daemon_process.socket_path, "register", extensionId=EXTENSION)  # as it may not be
    assert missing_after_restart(daemon_process, acknowledged) == {}
    print(
        f"deregistered and registered {toggles} times; acknowledged writes checked: "
        f"{len(acknowledged)}, lost: 0"
    )


@pytest.mark.reliability
def test_crash_loop(daemon_process: DaemonProcess) -> None:
    _crash_rounds(daemon_process, rounds=int(os.environ.get("VTD_CRASH_ROUNDS", "20")))
