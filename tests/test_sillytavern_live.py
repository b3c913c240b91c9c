"""vtd's plugin inside a real SillyTavern, installed from npm, after importing an old database.

This follows the README's migration: the old plugin's database goes in with
``vtctl import-valuetracker``, vtd's plugin files are copied into
SillyTavern's ``plugins/valuetracker``, and a browser extension's calls
(with SillyTavern's CSRF token, as the page sends them) reach vtd. It needs
the npm registry the first time (SillyTavern is kept in
``$VTD_SILLYTAVERN_DIR``, default ``/var/tmp/vtd-sillytavern``), so the plain
test command leaves it out; ``scripts/sillytavern-live`` runs it, and so
does CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from tests.test_import_valuetracker import old_database
from tests.test_sillytavern_plugin import http_json
from tests.wire import DaemonProcess, wait_until

SILLYTAVERN_VERSION = "1.19.0"
ROOT = Path(__file__).resolve().parent.parent
INSTALL = Path(os.environ.get("VTD_SILLYTAVERN_DIR", "/var/tmp/vtd-sillytavern"))
PACKAGE = INSTALL / "node_modules" / "sillytavern"
VTCTL = Path(sys.executable).parent / "vtctl"

pytestmark = [
    pytest.mark.live_sillytavern,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="needs node and npm (Debian: nodejs, npm)",
    ),
]


def installed_sillytavern() -> Path:
    """SillyTavern's package directory, installed from npm on first use."""
    version_file = PACKAGE / "package.json"
    if version_file.is_file() and json.loads(version_file.read_text())["version"] == (
        SILLYTAVERN_VERSION
    ):
        return PACKAGE
    INSTALL.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", f"sillytavern@{SILLYTAVERN_VERSION}"],
        cwd=INSTALL,
        capture_output=True,
        text=True,
        timeout=800,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot install SillyTavern from npm: {result.stderr.strip()[-300:]}")
    return PACKAGE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SillyTavern:
    """A running SillyTavern with vtd's plugin, and a browser-like HTTP session."""

    def __init__(self, package: Path, data: Path, vtd_socket: Path) -> None:
        self.port = free_port()
        self.log = data / "sillytavern.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    "node",
                    "server.js",
                    *("--port", str(self.port)),
                    *("--dataRoot", str(data / "data")),
                    *("--configPath", str(data / "config.yaml")),
                ],
                cwd=package,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "VTD_SOCKET": str(vtd_socket),
                    "SILLYTAVERN_ENABLESERVERPLUGINS": "true",
                    "SILLYTAVERN_ENABLESERVERPLUGINSAUTOUPDATE": "false",
                    "SILLYTAVERN_BROWSERLAUNCH_ENABLED": "false",
                },
            )
        wait_until(
            lambda: "is listening" in self.output() or self.process.poll() is not None,
            timeout=120,
            message="SillyTavern to listen",
        )
        assert self.process.poll() is None, self.output()
        self.base = f"http://127.0.0.1:{self.port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.csrf = self.get_json("/csrf-token")["token"]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get_json(self, path: str) -> Any:
        with self.opener.open(self.base + path, timeout=30) as response:
            return json.loads(response.read())

    def plugin(
        self, verb: str, path: str, body: Any = None, ext: str | None = "outfits"
    ) -> tuple[int, Any]:
        """A call to /api/plugins/valuetracker as a browser extension in the page makes it."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-CSRF-Token": self.csrf, "Content-Type": "application/json"}
        if ext is not None:
            headers["x-extension-id"] = ext
        url = f"{self.base}/api/plugins/valuetracker{path}"
        return http_json(self.opener, verb, url, data, headers)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)


def install_plugin(package: Path) -> None:
    """The README's install step: vtd's plugin files into plugins/valuetracker."""
    plugin_dir = package / "plugins" / "valuetracker"
    shutil.rmtree(plugin_dir, ignore_errors=True)
    plugin_dir.mkdir(parents=True)
    for name in ("index.js", "vtd.js", "package.json"):
        shutil.copy(ROOT / "client" / "node" / name, plugin_dir)


def test_an_imported_database_is_served_by_sillytavern_through_vtd(
    daemon_process: DaemonProcess, tmp_path: Path
) -> None:
    old = old_database(
        tmp_path / "outfits.db",
        characters=[("alice", "Alice")],
        instances=[("chat-1", "alice", None)],
        values=[("chat-1", "outfit", '{"top":"coat"}'), ("chat-1", "hp", "57")],
    )
    result = subprocess.run(
        [str(VTCTL), "--socket", str(daemon_process.socket_path), "import-valuetracker", str(old)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    package = installed_sillytavern()
    install_plugin(package)
    server = SillyTavern(package, tmp_path, daemon_process.socket_path)
    try:
        assert "Initializing plugin from" in server.output()
        wait_until(
            lambda: "[valuetracker] served by vtd " in server.output(),
            message="the plugin to say in SillyTavern's console that vtd answers",
        )
        status, character = server.plugin("get", "/characters/alice")
        assert status == 200
        assert character["instances"][0]["data"] == {"outfit": {"top": "coat"}, "hp": 57}

        # A browser extension's session, as it ran against the old plugin.
        assert server.plugin("post", "/register") == (
            200,
            {"success": True, "message": "Extension outfits registered successfully"},
        )
        body = {"key": "mood", "value": "123"}
        assert server.plugin("post", "/instances/chat-1/data", body)[0] == 200
        assert server.plugin("get", "/instances/chat-1/data/mood") == (200, {"mood": "123"})
        assert server.plugin("get", "/cross-extension/instances/outfits/chat-1/data", ext=None) == (
            200,
            {"outfit": {"top": "coat"}, "hp": 57, "mood": "123"},
        )
        status, error = server.plugin("get", "/characters/nobody")
        assert (status, error["error"]) == (404, "Character not found")
        status, error = server.plugin("get", "/characters", ext=None)
        assert (status, error["error"]) == (
            400,
            "Extension ID is required in header: x-extension-id",
        )

        # vtd restarts under SillyTavern: 503 meanwhile, then served again.
        assert daemon_process.stop() == 0
        status, error = server.plugin("get", "/characters")
        assert status == 503
        assert "Is the daemon running?" in error["error"]
        daemon_process.start()
        status, characters = server.plugin("get", "/characters")
        assert (status, [c["id"] for c in characters]) == (200, ["alice"])

        # SillyTavern calls the plugin's exit() on SIGINT, then exits.
        assert server.stop() == 0, server.output()[-2000:]
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
