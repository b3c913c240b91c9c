"""Property-based abuse of the wire: every complete line gets exactly one answer.

Hypothesis throws arbitrary bytes, invalid UTF-8, truncated lines, random
JSON, random JSON-RPC envelopes and random params at every method of one
real daemon. After every example the daemon must still be alive, the line
must have had exactly the answers the spec calls for (one, or none for
notifications), every answer must be well-formed JSON-RPC without a
traceback, and a well-behaved client on another connection keeps working.
Set ``VTD_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wire import DaemonProcess, call_sync, nested, seed
from vtd.methods import METHODS

EXAMPLES = int(os.environ.get("VTD_FUZZ_EXAMPLES", "150"))
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# The polite client's own extension: longer than any id the fuzzer makes, so
# a fuzzed deregister can never take it away.
POLITE = "polite-client"
PARAM_NAMES = sorted({p.name for m in METHODS.values() for p in m.params} | {"extra", ""})


class Session:
    """The fuzzing connection, and a polite client running beside it."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(daemon.socket_path))
        self.buffer = b""
        self.probes = 0
        self.polite_failures: list[str] = []
        self.polite_calls = 0
        self.stop = threading.Event()
        self.polite = threading.Thread(target=self._polite, daemon=True)
        self.polite.start()

    def _polite(self) -> None:
        path = self.daemon.socket_path
        while not self.stop.is_set():
            try:
                call_sync(
                    path,
                    "data.set",
                    extensionId=POLITE,
                    id="i1",
                    key="polite",
                    value=self.polite_calls,
                )
                self.polite_calls += 1
            except Exception as exc:  # recorded, asserted by the tests
                self.polite_failures.append(repr(exc))
            self.stop.wait(0.01)

    def read_line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "the daemon closed the fuzzing connection"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def check(self, line: bytes) -> None:
        """Send one line; assert it gets exactly the answers the spec calls for."""
        expected = expected_answers(line)
        self.sock.sendall(line + b"\n")
        for _ in range(expected):
            assert_well_formed(self.read_line())
        self.probes += 1
        probe_id = f"probe-{self.probes}"
        self.sock.sendall(
            json.dumps({"jsonrpc": "2.0", "id": probe_id, "method": "ping"}).encode() + b"\n"
        )
        reply = json.loads(self.read_line())
        assert reply.get("id") == probe_id, f"an extra answer came for {line[:200]!r}: {reply}"
        assert self.daemon.process is not None
        assert self.daemon.process.poll() is None, "the daemon died"
        assert self.polite_failures == []

    def close(self) -> None:
        self.stop.set()
        self.polite.join(10)
        self.sock.close()


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    def finite(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            raise ValueError(text)
        return value

    return json.loads(text, parse_constant=refuse, parse_float=finite)


def _is_notification(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and "id" not in item
        and item.get("jsonrpc") == "2.0"
        and isinstance(item.get("method"), str)
        and set(item) <= {"jsonrpc", "method", "params"}
    )


def expected_answers(line: bytes) -> int:
    """How many answer lines the protocol calls for (0 or 1)."""
    if not line.strip(b" \t\r"):
        return 0
    try:
        message = _strict_json(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return 1
    if isinstance(message, list):
        return (
            1
            if not message or len(message) > 128
            else int(not all(_is_notification(item) for item in message))
        )
    return 0 if _is_notification(message) else 1


def assert_well_formed(line: bytes) -> None:
    text = line.decode("utf-8")
    assert "Traceback" not in text
    answer = json.loads(text)
    for item in answer if isinstance(answer, list) else [answer]:
        assert item["jsonrpc"] == "2.0"
        assert "id" in item
        assert ("result" in item) != ("error" in item), item
        if "error" in item:
            error = item["error"]
            assert isinstance(error["code"], int)
            assert isinstance(error["message"], str)
            assert error["message"]
            assert isinstance(error.get("data", {}), dict)
            assert error["code"] != -32603, f"internal error for {line[:200]!r}"


@pytest.fixture(scope="module")
def session(module_daemon: DaemonProcess) -> Iterator[Session]:
    path = module_daemon.socket_path
    seed(path, "fuzz", character="c1", instance="i1")
    seed(path, POLITE, character="c1", instance="i1")
    fuzz_session = Session(module_daemon)
    yield fuzz_session
    fuzz_session.close()
    assert fuzz_session.polite_failures == []
    assert fuzz_session.polite_calls > 0
    assert module_daemon.stop() == 0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ids = st.sampled_from(["c1", "i1", "fuzz", "x", "", "a b", "../x", "\n"]) | st.text(max_size=10)
param_values = ids | json_values
params = st.dictionaries(st.sampled_from(PARAM_NAMES), param_values, max_size=5)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "method": st.sampled_from(sorted(METHODS)) | st.text(max_size=12),
        "params": params | json_values,
        "id": st.integers() | st.text(max_size=5) | st.none() | json_values,
    },
)
requests = st.builds(
    lambda method, p, i: {"jsonrpc": "2.0", "method": method, "params": p, "id": i},
    st.sampled_from(sorted(METHODS)),
    params,
    st.integers(0, 10**6),
)


def _line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@fuzz_settings
@given(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")))
def test_arbitrary_bytes(session: Session, data: bytes) -> None:
    session.check(data)


@fuzz_settings
@given(requests, st.data())
def test_truncated_requests(session: Session, request: dict, data: st.DataObject) -> None:
    line = _line(request)
    session.check(line[: data.draw(st.integers(0, max(0, len(line) - 1)))])


@fuzz_settings
@given(json_values)
def test_random_json(session: Session, value: Any) -> None:
    session.check(_line(value))


@fuzz_settings
@given(envelopes)
def test_random_envelopes(session: Session, envelope: dict) -> None:
    session.check(_line(envelope))


@fuzz_settings
@given(requests)
def test_random_params_at_every_method(session: Session, request: dict) -> None:
    session.check(_line(request))


@fuzz_settings
@given(st.lists(requests | envelopes | json_values, min_size=0, max_size=6))
def test_random_batches(session: Session, batch: list) -> None:
    session.check(_line(batch))


def test_deep_nesting_is_refused_in_bounded_time(session: Session) -> None:
    session.check(b"[" * 100_000 + b"]" * 100_000)
    session.check(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "data.set",
        "params": {"extensionId": "fuzz", "id": "i1", "key": "deep", "value": nested(300)},
    }
    session.sock.sendall(_line(request) + b"\n")
    reply = json.loads(session.read_line())
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["field"] == "value"
