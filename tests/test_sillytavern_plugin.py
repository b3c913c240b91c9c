"""The SillyTavern server plugin (``client/node/index.js``) over real HTTP and a real daemon.

Each test loads the plugin into Express as SillyTavern does
(``tests/sillytavern_host.js``) and calls the old valuetracker REST API,
as a browser extension written for that plugin would.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.wire import DaemonProcess, wait_until

NODE = shutil.which("node")
NODE_DIR = Path(__file__).resolve().parent.parent / "client" / "node"
HOST = Path(__file__).resolve().parent / "sillytavern_host.js"
pytestmark = [
    pytest.mark.skipif(
        NODE is None, reason="node is not installed (.ci/run installs Debian's nodejs)"
    ),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "express").is_dir(),
        reason="express is not installed: run `npm ci --prefix client/node` (.ci/run does)",
    ),
]
_names = itertools.count()


def http_json(
    opener: urllib.request.OpenerDirector,
    verb: str,
    url: str,
    data: bytes | None,
    headers: dict[str, str],
) -> tuple[int, Any]:
    """One HTTP call; its status and its JSON body, error statuses included."""
    request = urllib.request.Request(url, data=data, method=verb.upper(), headers=headers)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Host:
    """The plugin loaded into Express on a localhost port, talking to one daemon."""

    def __init__(self, socket_path: Path, *flags: str) -> None:
        assert NODE is not None
        self.process = subprocess.Popen(
            [NODE, str(HOST), str(NODE_DIR), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "VTD_SOCKET": str(socket_path),
                "NODE_PATH": str(NODE_DIR / "node_modules"),
            },
        )
        assert self.process.stdout is not None
        self.said: list[str] = []  # what the plugin printed before Express listened
        for line in self.process.stdout:
            if line.startswith("listening "):
                break
            self.said.append(line.rstrip("\n"))
        else:
            raise AssertionError(self.process.stderr and self.process.stderr.read())
        self.base = f"http://127.0.0.1:{line.split()[1]}/api/plugins/valuetracker"
        self.opener = urllib.request.build_opener()

    def rest(
        self, verb: str, path: str, body: Any = None, *, ext: str | None = None, raw: bytes = b""
    ) -> tuple[int, Any]:
        """One HTTP call; its status and its JSON body."""
        data = raw or (None if body is None else json.dumps(body).encode())
        headers = {} if data is None else {"Content-Type": "application/json"}
        if ext is not None:
            headers["x-extension-id"] = ext
        return http_json(self.opener, verb, self.base + path, data, headers)

    def stop(self) -> int:
        """SIGTERM (the plugin's exit()); answer node's exit status once it ended."""
        self.process.send_signal(signal.SIGTERM)
        _, self.stderr = self.process.communicate(timeout=30)
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate()


@pytest.fixture(scope="module")
def host(module_daemon: DaemonProcess) -> Iterator[Host]:
    started = Host(module_daemon.socket_path)
    yield started
    started.kill()


@pytest.fixture
def ext(host: Host) -> str:
    """A fresh registered extension with character c1 and its instance i1."""
    name = f"st{next(_names)}"
    assert host.rest("post", "/register", ext=name)[0] == 200
    assert host.rest("post", "/characters", {"id": "c1", "name": "Alice"}, ext=name)[0] == 200
    status, _ = host.rest("post", "/instances", {"id": "i1", "characterId": "c1"}, ext=name)
    assert status == 200
    return name


def test_register_answers_as_the_old_plugin_did(host: Host) -> None:
    assert host.rest("post", "/register", ext="st-register") == (
        200,
        {"success": True, "message": "Extension st-register registered successfully"},
    )
    assert host.rest("delete", "/register", ext="st-register") == (
        200,
        {"success": True, "message": "Extension st-register deregistered successfully"},
    )


def test_character_and_instance_routes_answer_the_old_shapes(host: Host, ext: str) -> None:
    status, characters = host.rest("get", "/characters", ext=ext)
    assert status == 200
    assert [(c["id"], c["name"]) for c in characters] == [("c1", "Alice")]
    status, instance = host.rest("post", "/instances", {"id": "i2", "characterId": "c1"}, ext=ext)
    assert status == 200
    assert (instance["id"], instance["characterId"], instance["name"]) == ("i2", "c1", None)
    for path in ("/instances?characterId=c1", "/characters/c1/instances"):
        status, instances = host.rest("get", path, ext=ext)
        assert (status, [i["id"] for i in instances]) == (200, ["i1", "i2"])
    status, full = host.rest("get", "/characters/c1", ext=ext)
    assert status == 200
    assert full["character"]["name"] == "Alice"
    assert [entry["instance"]["id"] for entry in full["instances"]] == ["i1", "i2"]
    assert host.rest("delete", "/instances/i2", ext=ext) == (200, {"success": True})
    assert host.rest("delete", "/characters/c1/instances", ext=ext) == (
        200,
        {"success": True, "deletedCount": 1},
    )
    assert host.rest("delete", "/characters/c1", ext=ext) == (200, {"success": True})
    assert host.rest("get", "/characters", ext=ext) == (200, [])


def test_data_round_trips_exactly(host: Host, ext: str) -> None:
    assert host.rest("post", "/instances/i1/data", {"key": "hp", "value": "123"}, ext=ext) == (
        200,
        {"success": True, "key": "hp", "value": "123"},
    )
    status, _ = host.rest("put", "/instances/i1/data", {"key": "tags", "value": ["a"]}, ext=ext)
    assert status == 200
    assert host.rest("get", "/instances/i1/data/hp", ext=ext) == (200, {"hp": "123"})
    assert host.rest("put", "/instances/i1/data/merge", {"mood": "calm"}, ext=ext) == (
        200,
        {"success": True, "message": "Instance data merged successfully"},
    )
    assert host.rest("get", "/instances/i1/data", ext=ext) == (
        200,
        {"hp": "123", "tags": ["a"], "mood": "calm"},
    )
    assert host.rest("put", "/instances/i1/data/remove", {"keys": ["tags", "nope"]}, ext=ext) == (
        200,
        {"success": True, "removedCount": 1},
    )
    assert host.rest("delete", "/instances/i1/data/mood", ext=ext) == (200, {"success": True})
    assert host.rest("put", "/instances/i1/data/override", {"only": 1}, ext=ext) == (
        200,
        {"success": True, "message": "Instance data overridden successfully"},
    )
    status, instance = host.rest("get", "/instances/i1", ext=ext)
    assert (status, instance["instance"]["id"], instance["data"]) == (200, "i1", {"only": 1})
    assert host.rest("delete", "/instances/i1/data", ext=ext) == (200, {"success": True})
    assert host.rest("get", "/instances/i1/data", ext=ext) == (200, {})


def test_cross_extension_reads_take_the_extension_from_the_path(host: Host, ext: str) -> None:
    host.rest("post", "/instances/i1/data", {"key": "hp", "value": 7}, ext=ext)
    assert host.rest("get", f"/cross-extension/instances/{ext}/i1/data/hp") == (200, {"hp": 7})
    assert host.rest("get", f"/cross-extension/instances/{ext}/i1/data") == (200, {"hp": 7})
    status, characters = host.rest("get", f"/cross-extension/characters/{ext}")
    assert (status, [c["id"] for c in characters]) == (200, ["c1"])
    status, full = host.rest("get", f"/cross-extension/characters/{ext}/c1")
    assert (status, full["character"]["id"]) == (200, "c1")
    status, instances = host.rest("get", f"/cross-extension/characters/{ext}/c1/instances")
    assert (status, [i["id"] for i in instances]) == (200, ["i1"])
    status, instance = host.rest("get", f"/cross-extension/instances/{ext}/i1")
    assert (status, instance["data"]) == (200, {"hp": 7})


def test_errors_have_the_old_statuses_and_say_what_is_wrong(host: Host, ext: str) -> None:
    assert host.rest("get", "/characters") == (
        400,
        {"error": "Extension ID is required in header: x-extension-id"},
    )
    status, body = host.rest("get", "/characters", ext="st-never-registered")
    assert (status, body["error"]) == (404, "Database not found for extension: st-never-registered")
    assert body["code"] == -32001
    status, body = host.rest("get", "/characters/nobody", ext=ext)
    assert (status, body["error"], body["data"]) == (
        404,
        "Character not found",
        {"kind": "character", "id": "nobody"},
    )
    status, body = host.rest("get", "/instances/nope/data", ext=ext)  # the old plugin: 200 {}
    assert (status, body["error"], body["data"]) == (
        404,
        "Instance not found",
        {"kind": "instance", "id": "nope"},
    )
    status, body = host.rest("get", "/instances/i1/data/mana", ext=ext)
    assert (status, body["data"]) == (404, {"kind": "key", "id": "mana", "instanceId": "i1"})
    status, body = host.rest("post", "/instances/i1/data", {"value": 1}, ext=ext)
    assert (status, body["data"]["field"]) == (400, "key")
    status, body = host.rest("put", "/instances/i1/data/merge", [1, 2], ext=ext)
    assert (status, body["data"]["field"]) == (400, "data")


def test_ping_and_probe_need_no_extension(host: Host) -> None:
    assert host.rest("post", "/ping", {"message": "hi"}) == (200, {"message": "Pong! hi"})
    status, body = host.rest("get", "/probe")
    assert (status, body["ok"]) == (200, True)


def test_bodies_are_read_without_a_body_parser(module_daemon: DaemonProcess) -> None:
    host = Host(module_daemon.socket_path, "--raw")
    try:
        assert host.rest("post", "/register", ext="st-raw")[0] == 200
        assert host.rest("post", "/characters", {"id": "c", "name": "Raw"}, ext="st-raw")[0] == 200
        status, characters = host.rest("get", "/characters", ext="st-raw")
        assert (status, characters[0]["name"]) == (200, "Raw")
        status, body = host.rest("post", "/characters", raw=b"{not json", ext="st-raw")
        assert (status, body) == (400, {"error": "the request body is not valid JSON"})
    finally:
        assert host.stop() == 0


def test_the_console_says_at_start_when_vtd_does_not_answer(tmp_path: Path) -> None:
    host = Host(tmp_path / "nobody.sock")
    wait_until(lambda: host.rest("get", "/probe")[0] == 503, message="a request to fail")
    assert host.stop() == 0
    assert f"[valuetracker] cannot connect to vtd at {tmp_path / 'nobody.sock'}" in host.stderr


def test_vtd_down_is_503_and_the_plugin_reconnects(daemon_process: DaemonProcess) -> None:
    host = Host(daemon_process.socket_path)
    try:
        assert host.rest("post", "/register", ext="st-down")[0] == 200
        assert daemon_process.stop() == 0
        status, body = host.rest("get", "/characters", ext="st-down")
        assert status == 503
        assert "cannot connect to vtd" in body["error"]
        daemon_process.start()
        assert host.rest("get", "/characters", ext="st-down") == (200, [])
    finally:
        assert host.stop() == 0  # exit() closes the connection: node ends
