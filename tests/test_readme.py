"""The README's examples run as written, against a real daemon."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.wire import TIMESTAMP, DaemonProcess

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```\w+\n(.*?)```", re.S)
BLOCKS = BLOCK.findall(README.read_text())


def test_the_readme_has_tested_examples() -> None:
    assert {kind for kind, _ in BLOCKS} == {"python", "sh", "node"}


@pytest.mark.parametrize(
    ("kind", "code"), BLOCKS, ids=[f"{k}-{n}" for n, (k, _) in enumerate(BLOCKS)]
)
def test_readme_example_runs(daemon_process: DaemonProcess, kind: str, code: str) -> None:
    env = {
        **os.environ,
        "VTD_SOCKET": str(daemon_process.socket_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    commands = {
        "python": [sys.executable, "-c", code],
        "sh": ["bash", "-euo", "pipefail", "-c", code],
        "node": ["node", "-e", code],  # run beside vtd.js, as the README says to copy it
    }
    if kind == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed (.ci/run installs Debian's nodejs)")
    result = subprocess.run(
        commands[kind],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT / "client" / "node" if kind == "node" else None,
    )
    assert result.returncode == 0, result.stderr


def tour_lines() -> tuple[list[str], dict[Any, dict[str, Any]]]:
    """The tour's request lines, and its example answers by id."""
    tour = README.read_text().split("## A 30-second tour", 1)[1].split("\n## ", 1)[0]
    lines = [
        line
        for block in re.findall(r"```json\n(.*?)```", tour, re.S)
        for line in block.splitlines()
    ]
    requests = [line for line in lines if '"method"' in line]
    shown = [json.loads(line) for line in lines if '"method"' not in line]
    return requests, {answer["id"]: answer for answer in shown}


def without_clock(value: Any) -> Any:
    """`value` with every timestamp replaced by one marker."""
    if isinstance(value, dict):
        return {key: without_clock(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_clock(item) for item in value]
    if isinstance(value, str) and TIMESTAMP.fullmatch(value):
        return "<timestamp>"
    return value


def take_the_tour(send: Callable[[bytes], bytes]) -> None:
    """Send the tour's requests through `send` and check every answer it shows."""
    requests, shown = tour_lines()
    assert len(requests) == 7
    assert set(shown) == {1, 5, 6, 7}
    got = [
        json.loads(line) for line in send("".join(f"{r}\n" for r in requests).encode()).splitlines()
    ]
    by_id = {answer["id"]: answer for answer in got}
    assert sorted(by_id) == list(range(1, 8)), got
    assert all("result" in by_id[n] for n in range(1, 7)), got
    for answer_id, answer in shown.items():
        assert without_clock(by_id[answer_id]) == without_clock(answer)


def test_the_tour_answers_as_shown(daemon_process: DaemonProcess) -> None:
    def send(lines: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(daemon_process.socket_path))
            sock.sendall(lines)
            sock.shutdown(socket.SHUT_WR)
            return b"".join(iter(lambda: sock.recv(65536), b""))

    take_the_tour(send)


@pytest.mark.skipif(
    shutil.which("socat") is None, reason="socat is not installed (.ci/run installs it)"
)
def test_the_tour_runs_through_socat(daemon_process: DaemonProcess) -> None:
    def send(lines: bytes) -> bytes:
        command = ["socat", "-", f"UNIX-CONNECT:{daemon_process.socket_path}"]
        return subprocess.run(
            command, input=lines, capture_output=True, check=True, timeout=30
        ).stdout

    take_the_tour(send)
