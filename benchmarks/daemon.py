"""A vtd subprocess for the benchmarks, on a temporary socket and data dir."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vtd_client import Client


class Daemon:
    """A vtd subprocess on a temporary socket and data dir."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="vtd-bench-", dir="/tmp"))
        self.socket = self.directory / "vtd.sock"
        self.log = open(self.directory / "daemon.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vtd",
                "--socket",
                str(self.socket),
                "--data-dir",
                str(self.directory / "data"),
                "--log-level",
                "warning",
                "--max-connections",
                "2048",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with Client(self.socket, timeout=5) as client:
                    client.probe()
                break
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the daemon did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the daemon and remove its temporary socket and data dir."""
        self.process.terminate()
        self.process.wait(30)
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)
