"""The load generator: closed-loop connections in their own process.

Run by ``benchmarks.__main__`` as ``python -m benchmarks.load SPEC_JSON``;
prints one JSON object: ops, errors, latencies (seconds) and its own CPU
time. It speaks the wire protocol with plain asyncio streams and
pre-encoded requests, so that it stays far from being the bottleneck.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from typing import Any

VALUE = {"hp": 57, "tags": ["a", "b"], "note": "a small JSON object like a tracker keeps"}


def make_request(kind: str, rng: random.Random, spec: dict[str, Any], request_id: int) -> bytes:
    """One request line for operation ``kind``: W, R, F, or M (90% R, 10% W)."""
    if kind == "M":
        kind = "W" if rng.random() < 0.1 else "R"
    instance = f"i{rng.randrange(spec['instances'])}"
    key = f"k{rng.randrange(spec['keys'])}"
    if kind == "W":
        value = dict(VALUE, hp=rng.randrange(1000))
        params = {"extensionId": spec["extension"], "id": instance, "key": key, "value": value}
        method = "data.set"
    elif kind == "R":
        params = {"extensionId": spec["extension"], "id": instance, "key": key}
        method = "data.getKey"
    else:
        params = {"extensionId": spec["extension"], "id": instance}
        method = "instances.get"
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


async def connection(spec: dict[str, Any], seed: int, stop_at: float, out: dict[str, Any]) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_unix_connection(spec["socket"], limit=1 << 26)
    latencies: list[float] = out["latencies"]
    request_id = 0
    try:
        while time.perf_counter() < stop_at:
            request_id += 1
            line = make_request(spec["kind"], rng, spec, request_id)
            started = time.perf_counter()
            writer.write(line)
            reply = await reader.readline()
            latencies.append(time.perf_counter() - started)
            if b'"error"' in reply[:200] or not reply:
                out["errors"] += 1
                if len(out["samples"]) < 3:
                    out["samples"].append(reply[:300].decode(errors="replace"))
            out["ops"] += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ops": 0, "errors": 0, "latencies": [], "samples": []}
    # Warm up briefly so connection set-up is not measured, then measure.
    stop_at = time.perf_counter() + spec["seconds"]
    await asyncio.gather(
        *(connection(spec, spec["seed"] + n, stop_at, out) for n in range(spec["connections"]))
    )
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF)
    out = asyncio.run(run(spec))
    after = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
