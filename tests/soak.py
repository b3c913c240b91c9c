"""A long mixed load on one daemon, watching what a months-long run would accumulate.

``scripts/soak`` runs it: load processes send writes, reads, full reads,
merges, removals, deliberate bad requests and register/deregister churn
over 20 extensions with a bounded set of keys, so the stored data stops
growing early. Every ``--every`` seconds it samples the daemon's RSS, open
files, threads and WAL bytes; at the end it prints them as a table, writes
them as JSON and exits 1 if anything failed that should not have, or if
RSS kept growing in the second half of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.wire import DaemonProcess
from vtd_client import Client, InvalidParams, NotFound

EXTENSIONS = 20
INSTANCES = 10
KEYS = 200
GROWTH_ALLOWED = 1.10
"""RSS at the end may be at most this times RSS halfway through."""


def _load(socket_path: str, seed: int, stop: Any, counts: Any, failures: Any) -> None:
    """One load process: mixed calls until ``stop`` is set; tallies into shared counters."""
    chance = random.Random(seed)
    done = unexpected = 0
    with Client(socket_path, timeout=30) as client:
        while not stop.is_set():
            extension = client.extension(f"soak{chance.randrange(EXTENSIONS)}")
            instance = f"i{chance.randrange(INSTANCES)}"
            key = f"k{chance.randrange(KEYS)}"
            roll = chance.random()
            try:
                if roll < 0.55:
                    value = {"hp": chance.randrange(100), "tags": ["a", "b"], "note": "x" * 40}
                    extension.set_data_key(instance, key, value)
                elif roll < 0.60:
                    extension.get_data(instance)
                elif roll < 0.80:
                    with contextlib.suppress(NotFound):  # a key not set yet, or removed
                        extension.get_data_key(instance, key)
                elif roll < 0.90:
                    batch = {f"k{chance.randrange(KEYS)}": chance.random() for _ in range(20)}
                    extension.merge_data(instance, batch)
                elif roll < 0.95:
                    extension.remove_data_keys(instance, [key, f"k{chance.randrange(KEYS)}"])
                elif roll < 0.99:
                    try:
                        client.call(
                            "data.set",
                            extensionId=extension.extension_id,
                            id=instance,
                            key="",
                            value=1,
                        )
                    except InvalidParams:
                        pass  # asked for: an empty key is refused
                    else:
                        unexpected += 1
                else:
                    churn = f"churn{seed}"
                    client.register(churn)
                    client.extension(churn).upsert_character("c")
                    client.deregister(churn)
            except Exception as exc:  # anything else is a failure to report
                unexpected += 1
                print(f"load {seed}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            done += 1
            if done % 500 == 0:
                with counts.get_lock():
                    counts.value += 500
    with counts.get_lock():
        counts.value += done % 500
    with failures.get_lock():
        failures.value += unexpected


def _prepare(socket_path: Path) -> None:
    with Client(socket_path) as client:
        for n in range(EXTENSIONS):
            extension = client.extension(f"soak{n}")
            extension.register()
            extension.upsert_character("c")
            for i in range(INSTANCES):
                extension.upsert_instance(f"i{i}", character_id="c")


def _sample(pid: int, data_dir: Path) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    wal = sum(path.stat().st_size for path in data_dir.rglob("*-wal"))
    return {
        "rss_kib": rss,
        "files": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "wal_kib": wal // 1024,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak; answer the exit status."""
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=15, help="how long (default 15)")
    parser.add_argument("--every", type=float, default=30, help="seconds between samples (30)")
    parser.add_argument("--clients", type=int, default=4, help="load processes (4)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/soak.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vtd-soak-") as scratch:
        root = Path(scratch)
        with DaemonProcess(root / "vtd.sock", root / "data") as daemon:
            assert daemon.process is not None
            _prepare(daemon.socket_path)
            stop = multiprocessing.Event()
            counts = multiprocessing.Value("q", 0)
            failures = multiprocessing.Value("q", 0)
            loads = [
                multiprocessing.Process(
                    target=_load, args=(str(daemon.socket_path), n, stop, counts, failures)
                )
                for n in range(args.clients)
            ]
            for process in loads:
                process.start()
            samples = []
            start = time.monotonic()
            end = start + args.minutes * 60
            while True:
                now = time.monotonic()
                samples.append(
                    {"minute": round((now - start) / 60, 1), "calls": counts.value}
                    | _sample(daemon.process.pid, root / "data")
                )
                if now >= end:
                    break
                stop.wait(min(args.every, end - now))
            stop.set()
            for process in loads:
                process.join(60)
            alive = daemon.process.poll() is None
            stopped = daemon.stop()

    print("| minute | calls | RSS MiB | open files | threads | WAL KiB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in samples:
        print(
            f"| {s['minute']} | {s['calls']:,} | {s['rss_kib'] / 1024:.1f} | {s['files']} "
            f"| {s['threads']} | {s['wal_kib']:,} |"
        )
    half = samples[len(samples) // 2]["rss_kib"]
    last = samples[-1]["rss_kib"]
    verdict = {
        "calls": counts.value,
        "unexpected_failures": failures.value,
        "daemon_alive_throughout": alive,
        "clean_stop": stopped == 0,
        "rss_end_over_half": round(last / half, 3),
    }
    print(json.dumps(verdict))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"samples": samples, "verdict": verdict}, indent=2) + "\n")
    healthy = failures.value == 0 and alive and stopped == 0 and last <= half * GROWTH_ALLOWED
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
