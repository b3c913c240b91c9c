"""How much one client reading or writing large data slows everyone else.

``python -m benchmarks.large_values`` starts its own daemon, stores one
large string value (15 MiB by default) and one instance of many mid-sized
values (200 of 60 KB), and measures pings on one connection four times in
the same run: alone, while another process reads the large value over and
over, while it writes it over and over, and while it reads the whole
instance over and over. It prints the four, with their ratios to the
first, and writes JSON. A daemon that parses, reads, encodes or sends such
data on its event loop's thread makes every ping behind it wait; one that
keeps that work off the loop barely slows them.
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

CLIENT = """
import json, socket, sys
path, extension, method, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if method == "data.get":
    params = {"extensionId": extension, "id": "many"}
else:
    params = {"extensionId": extension, "id": "i", "key": "big"}
if method == "data.set":
    params["value"] = "@"  # each write: a string of one letter, not the letter before
request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
head, _, tail = request.partition(b"@")
sock = socket.socket(socket.AF_UNIX)
sock.connect(path)
answers = sock.makefile("rb")
sys.stdout.write("ready\\n")
sys.stdout.flush()
sent = 0
while True:
    if method == "data.set":
        sock.sendall(head + bytes([97 + sent % 26]) * size + tail + b"\\n")
    else:
        sock.sendall(request + b"\\n")
    sent += 1
    if b'"error"' in answers.readline()[:100]:
        sys.exit(method + " failed")
"""
"""The busy client: reads (``data.getKey``) or writes (``data.set``) the large
value, or reads the instance of many values (``data.get``), again and again.
Each write changes every byte of the value: a write of the value already
stored changes no page of the file."""

BUSY_CLIENTS = {
    "beside a reader": "data.getKey",
    "beside a writer": "data.set",
    "beside an instance reader": "data.get",
}
MANY_VALUES = 200
MANY_VALUES_SIZE = 60_000
"""The runs after the one alone: what the other process does meanwhile."""


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
    """Store the data; ping alone and beside each busy client; print, write JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_values", description=__doc__)
    parser.add_argument("--size-mib", type=float, default=15.0, help="the value's size (15)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each ping run's length (5)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/large_values.json"))
    args = parser.parse_args()
    size = int(args.size_mib * (1 << 20))
    daemon = Daemon()
    try:
        with Client(daemon.socket, timeout=60) as client:
            extension = client.extension(EXTENSION)
            extension.register()
            extension.upsert_character("c")
            extension.upsert_instance("i", "c")
            extension.set_data_key("i", "big", "x" * size)
            extension.upsert_instance("many", "c")
            extension.merge_data(
                "many", {f"k{n}": "x" * MANY_VALUES_SIZE for n in range(MANY_VALUES)}
            )
        runs = {"alone": ping_for(daemon.socket, args.seconds)}
        for name, method in BUSY_CLIENTS.items():
            busy = subprocess.Popen(
                [sys.executable, "-c", CLIENT, str(daemon.socket), EXTENSION, method, str(size)],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert busy.stdout is not None
                if busy.stdout.readline() != "ready\n":
                    raise RuntimeError(f"the client calling {method} did not start")
                runs[name] = ping_for(daemon.socket, args.seconds)
                if busy.poll() is not None:
                    raise RuntimeError(f"the client calling {method} stopped early")
            finally:
                busy.kill()
                busy.wait()
    finally:
        daemon.stop()
    print(
        f"pings on one connection, {args.seconds:g} s each; a {args.size_mib:g} MiB value, "
        f"an instance of {MANY_VALUES} values of {MANY_VALUES_SIZE:,} bytes"
    )
    print("| pings | answered | × alone | p50 µs | p99 µs | max ms | over 5 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, pings in runs.items():
        print(
            f"| {name} | {pings.answered:,} "
            f"| {pings.answered / runs['alone'].answered:.2f} | {pings.p50_us:,.0f} "
            f"| {pings.p99_us:,.0f} | {pings.max_ms:,.1f} | {pings.over_5_ms:,} |"
        )
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size_mib": args.size_mib,
        "seconds": args.seconds,
        "pings": {name: asdict(pings) for name, pings in runs.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
