"""The README's examples run as written, against a real daemon."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wire import DaemonProcess

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
