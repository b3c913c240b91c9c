"""The load generator: closed-loop connections in their own process.

Run by ``benchmarks.__main__`` as ``python -m benchmarks.load SPEC_JSON``;
prints one JSON object: ops, errors, latencies (seconds) and its own CPU
time. It speaks the wire protocol with a bare asyncio protocol and
requests encoded ahead of time, so that it takes as little CPU as it can.

Each write stores a value never stored before: its ``rev`` names the
connection and counts its sends. A write of the value a row already holds
changes no page of the file, and its commit costs next to nothing, so
writes sent round and round from a pool would measure mostly no-ops (until
December 6th's last runs, about half of W16's writes at 100,000 rows were).
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import secrets
import sys
import time
from typing import Any

VALUE = {"hp": 57, "tags": ["a", "b"], "note": "a small JSON object like a tracker keeps"}

Request = tuple[bytes, bytes | None]
"""A request line, or the two halves of one, with a write's send count to go between."""

_SEND_COUNT = "<send>"
"""Where a write's send count goes: a text no request holds otherwise, and
that JSON encodes as itself."""


def make_request(
    kind: str, rng: random.Random, spec: dict[str, Any], request_id: int, writer: str
) -> Request:
    """One request for operation ``kind``: W, R, F, or M (90% R, 10% W).

    A write's value has the ``rev`` ``"<writer>-<send count>"``: ``writer``
    must be unique to the connection, across runs too.
    """
    if kind == "M":
        kind = "W" if rng.random() < 0.1 else "R"
    instance = f"i{rng.randrange(spec['instances'])}"
    key = f"k{rng.randrange(spec['keys'])}"
    if kind == "W":
        value = dict(VALUE, hp=rng.randrange(1000), rev=f"{writer}-{_SEND_COUNT}")
        params = {"extensionId": spec["extension"], "id": instance, "key": key, "value": value}
        method = "data.set"
    elif kind == "R":
        params = {"extensionId": spec["extension"], "id": instance, "key": key}
        method = "data.getKey"
    else:
        params = {"extensionId": spec["extension"], "id": instance}
        method = "instances.get"
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
    head, count, tail = line.partition(_SEND_COUNT.encode())
    return (head, tail) if count else (line, None)


def request_line(request: Request, sends: int) -> bytes:
    """The line to send for ``request`` as its connection's ``sends``-th request."""
    head, tail = request
    return head if tail is None else b"%s%d%s" % (head, sends, tail)


POOL = 2048
"""Requests made ahead of time per connection, then sent round and round."""


class LoadConnection(asyncio.Protocol):
    """One closed-loop connection: send a request, wait for its answer, repeat.

    A bare protocol with requests encoded ahead of time costs the load
    generator a fraction of what streams and per-request encoding would, so
    that on a small machine it leaves the CPU to the daemon.
    """

    def __init__(self, lines: list[Request], stop_at: float, out: dict[str, Any]) -> None:
        self.lines = lines
        self.stop_at = stop_at
        self.out = out
        self.sent = 0
        self.started = 0.0
        self.buffer = bytearray()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the first request as soon as the connection is open."""
        assert isinstance(transport, asyncio.WriteTransport)
        self.transport = transport
        self.send_next()

    def send_next(self) -> None:
        """Send the next request of the pool, or close once the figure's time is up."""
        assert self.transport is not None
        if time.perf_counter() >= self.stop_at:
            self.transport.close()
            return
        request = self.lines[self.sent % len(self.lines)]
        self.sent += 1
        line = request_line(request, self.sent)
        self.started = time.perf_counter()
        self.transport.write(line)

    def data_received(self, data: bytes) -> None:
        """Count an answer once its newline arrives, then send the next request."""
        self.buffer += data
        if not self.buffer.endswith(b"\n"):
            return  # one request is in flight: its answer ends with the newline
        self.out["latencies"].append(time.perf_counter() - self.started)
        if b'"error"' in self.buffer[:200]:
            self.out["errors"] += 1
            if len(self.out["samples"]) < 3:
                self.out["samples"].append(self.buffer[:300].decode(errors="replace"))
        self.out["ops"] += 1
        self.buffer.clear()
        self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        """Let ``connection`` return."""
        if not self.closed.done():
            self.closed.set_result(None)


async def connection(
    spec: dict[str, Any], lines: list[Request], stop_at: float, out: dict[str, Any]
) -> None:
    """Drive one connection with ``lines`` until ``stop_at``, counting into ``out``."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_unix_connection(
        lambda: LoadConnection(lines, stop_at, out), spec["socket"]
    )
    await protocol.closed


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive every connection of ``spec``; answer the counts and latencies."""
    out: dict[str, Any] = {"ops": 0, "errors": 0, "latencies": [], "samples": []}
    pools = []
    for n in range(spec["connections"]):
        rng = random.Random(spec["seed"] + n)
        writer = secrets.token_hex(6)
        pools.append([make_request(spec["kind"], rng, spec, i, writer) for i in range(POOL)])
    # The clock starts once every request is made: making them takes a busy
    # machine longer than a short figure lasts.
    stop_at = time.perf_counter() + spec["seconds"]
    await asyncio.gather(*(connection(spec, lines, stop_at, out) for lines in pools))
    return out


def main() -> None:
    """Run the spec given as JSON in argv[1]; print the results, with CPU, as JSON."""
    spec = json.loads(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF)
    out = asyncio.run(run(spec))
    after = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
