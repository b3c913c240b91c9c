"""The benchmark's quick mode runs to the end with every request answered.

A smoke test only: no timing is asserted here (figures live in the README,
measured by ``python -m benchmarks``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.load import POOL, make_request, request_line

REPO = Path(__file__).parent.parent


def run_benchmark(module: str, out: Path, *args: str, timeout: float) -> tuple[str, dict[str, Any]]:
    """Run ``python -m module`` from the repo; answer its output and the JSON it wrote."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, json.loads(out.read_text())


def test_quick_benchmark_completes_without_errors(tmp_path: Path) -> None:
    stdout, report = run_benchmark(
        "benchmarks", tmp_path / "bench.json", "--quick", "--seconds", "0.5", timeout=300
    )
    assert report["errors"] == 0
    assert report["requests"] > 0
    assert set(report["figures"]) == {
        "W1@10k",
        "W16@10k",
        "R1@10k",
        "R16@10k",
        "F1@10k",
        "F16@10k",
        "M16@10k",
    }
    assert all(figure["requests"] > 0 for figure in report["figures"].values())
    assert "| figure |" in stdout


def test_large_value_benchmark_completes(tmp_path: Path) -> None:
    stdout, report = run_benchmark(
        "benchmarks.large_values",
        tmp_path / "large.json",
        *("--size-mib", "1", "--seconds", "0.3"),
        timeout=120,
    )
    assert set(report["pings"]) == {
        "alone",
        "beside a reader",
        "beside a writer",
        "beside an instance reader",
    }
    assert all(pings["answered"] > 0 for pings in report["pings"].values())
    assert "| beside a writer |" in stdout


def test_no_two_writes_of_the_load_store_the_same_value() -> None:
    # A write of the value already stored changes no page and costs no
    # fsync: a load that repeated its writes would measure mostly no-ops.
    spec = {"extension": "e", "instances": 10, "keys": 10}
    values = []
    for connection, writer in enumerate(["a1", "b2"]):
        rng = random.Random(connection)  # both pools alike: the writer tags must tell them apart
        pool = [make_request("W", rng, spec, n, writer) for n in range(POOL)]
        for sends in range(1, 2 * POOL + 1):  # round the pool twice
            message = json.loads(request_line(pool[(sends - 1) % POOL], sends))
            assert message["method"] == "data.set"
            values.append(json.dumps(message["params"]["value"], sort_keys=True))
    assert len(set(values)) == len(values) == 4 * POOL
