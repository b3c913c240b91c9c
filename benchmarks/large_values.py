"""How much one client reading a large value slows everyone else.

``python -m benchmarks.large_values`` starts its own daemon, stores one
large string value (15 MiB by default), and measures pings on one
connection twice in the same run: alone, then while another process reads
the large value over and over. It prints both, and their ratio, and writes
JSON. A daemon that reads, encodes or sends the value on its event loop's
thread makes every ping behind it wait; one that keeps that work off the
loop barely slows them.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.daemon import Daemon
from vtd_client import Client

EXTENSION = "large"
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'

READER = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
answers = sock.makefile("rb")
request = sys.argv[2].encode() + b"\\n"
sys.stdout.write("ready\\n")
sys.stdout.flush()
while True:
    sock.sendall(request)
    if b'"error"' in answers.readline()[:100]:
        sys.exit("the large value was not read")
"""
"""The reading process: asks for the large value, reads the answer, again."""


@dataclass
class Pings:
    """Ping round trips on one connection for a fixed time."""

    answered: int
    p50_us: float
    p99_us: float
    max_ms: float
    over_5_ms: int


def ping_for(path: Path, seconds: float) -> Pings:
    """Ping the daemon back to back on one connection for ``seconds``."""
    latencies: list[float] = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        answers = sock.makefile("rb")
        stop_at = time.perf_counter() + seconds
        while (started := time.perf_counter()) < stop_at:
            sock.sendall(PING)
            if b"Pong" not in answers.readline():
                raise RuntimeError("a ping was not answered with Pong")
            latencies.append(time.perf_counter() - started)
    latencies.sort()
    return Pings(
        answered=len(latencies),
        p50_us=latencies[len(latencies) // 2] * 1e6,
        p99_us=latencies[int(len(latencies) * 0.99)] * 1e6,
        max_ms=latencies[-1] * 1e3,
        over_5_ms=sum(latency > 0.005 for latency in latencies),
    )


def main() -> None:
    """Store the value, ping alone, ping beside the reader; print, write JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_values", description=__doc__)
    parser.add_argument("--size-mib", type=float, default=15.0, help="the value's size (15)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each ping run's length (5)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/large_values.json"))
    args = parser.parse_args()
    daemon = Daemon()
    try:
        with Client(daemon.socket, timeout=60) as client:
            extension = client.extension(EXTENSION)
            extension.register()
            extension.upsert_character("c")
            extension.upsert_instance("i", "c")
            extension.set_data_key("i", "big", "x" * int(args.size_mib * (1 << 20)))
        alone = ping_for(daemon.socket, args.seconds)
        request = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "data.getKey",
                "params": {"extensionId": EXTENSION, "id": "i", "key": "big"},
            }
        )
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(daemon.socket), request],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert reader.stdout is not None
            if reader.stdout.readline() != "ready\n":
                raise RuntimeError("the reading process did not start")
            beside = ping_for(daemon.socket, args.seconds)
            if reader.poll() is not None:
                raise RuntimeError("the reading process stopped before the pings ended")
        finally:
            reader.kill()
            reader.wait()
    finally:
        daemon.stop()
    print(f"pings on one connection, {args.seconds:g} s each; a {args.size_mib:g} MiB value")
    print("| pings | answered | p50 µs | p99 µs | max ms | over 5 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, pings in (("alone", alone), ("beside a reader of the value", beside)):
        print(
            f"| {name} | {pings.answered:,} | {pings.p50_us:,.0f} | {pings.p99_us:,.0f} "
            f"| {pings.max_ms:,.1f} | {pings.over_5_ms:,} |"
        )
    ratio = beside.answered / alone.answered
    print(f"beside the reader, pings answered {ratio:.2f}x as many as alone")
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size_mib": args.size_mib,
        "seconds": args.seconds,
        "alone": asdict(alone),
        "beside_reader": asdict(beside),
        "answered_ratio": ratio,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
