"""The same-run baseline: raw SQLite single-row commits from Python.

Same settings as vtd (WAL, ``synchronous=FULL``), one row updated and
committed at a time: what any durable store on this disk pays per write
without group commit. Every vtd figure is also printed as a ratio to it.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from pathlib import Path


def sqlite_commits_per_second(seconds: float, rows: int = 10_000) -> float:
    """Durable single-row commits per second on this machine's disk."""
    with tempfile.TemporaryDirectory(prefix="vtd-baseline-") as directory:
        conn = sqlite3.connect(Path(directory) / "baseline.sqlite3", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE data (pk INTEGER PRIMARY KEY, key TEXT UNIQUE, value TEXT)")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO data (key, value) VALUES (?, '{}')", ((f"k{n}",) for n in range(rows))
        )
        conn.execute("COMMIT")
        rng = random.Random(1)
        commits = 0
        stop_at = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < stop_at:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE data SET value = ? WHERE key = ?",
                (f'{{"hp":{rng.randrange(1000)}}}', f"k{rng.randrange(rows)}"),
            )
            conn.execute("COMMIT")
            commits += 1
        elapsed = time.perf_counter() - started
        conn.close()
    return commits / elapsed
