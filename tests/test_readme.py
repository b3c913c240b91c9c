"""The README's examples run as written, against a real daemon."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wire import DaemonProcess

README = Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```\w+\n(.*?)```", re.S)
BLOCKS = BLOCK.findall(README.read_text())


def test_the_readme_has_tested_examples() -> None:
    assert {kind for kind, _ in BLOCKS} == {"python", "sh"}


@pytest.mark.parametrize(
    ("kind", "code"), BLOCKS, ids=[f"{k}-{n}" for n, (k, _) in enumerate(BLOCKS)]
)
def test_readme_example_runs(daemon_process: DaemonProcess, kind: str, code: str) -> None:
    env = {
        **os.environ,
        "VTD_SOCKET": str(daemon_process.socket_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    command = (
        [sys.executable, "-c", code]
        if kind == "python"
        else ["bash", "-euo", "pipefail", "-c", code]
    )
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
