"""``vtctl`` run as a subprocess: every subcommand, its output and exit status."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wire import DaemonProcess

VTCTL = Path(sys.executable).parent / "vtctl"
_names = itertools.count()


def vtctl(
    daemon: DaemonProcess | None, *args: str, stdin: str | None = None, socket: Path | None = None
) -> subprocess.CompletedProcess[str]:
    path = socket or (daemon.socket_path if daemon else Path("/nonexistent/vtd.sock"))
    return subprocess.run(
        [str(VTCTL), "--socket", str(path), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=30,
        env={**os.environ, "NO_COLOR": "1"},
    )


def ok(daemon: DaemonProcess, *args: str, stdin: str | None = None) -> object:
    result = vtctl(daemon, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\n" not in result.stdout.strip()  # compact when piped
    return json.loads(result.stdout)


@pytest.fixture
def ext(module_daemon: DaemonProcess) -> str:
    name = f"cli{next(_names)}"
    ok(module_daemon, "ext", "register", name)
    ok(module_daemon, "char", "set", name, "c1", "--name", "Alice")
    ok(module_daemon, "inst", "set", name, "i1", "c1")
    return name


def test_ping_and_probe(module_daemon: DaemonProcess) -> None:
    assert ok(module_daemon, "ping") == {"message": "Pong!"}
    assert ok(module_daemon, "ping", "hello") == {"message": "Pong! hello"}
    assert ok(module_daemon, "probe")["ok"] is True


def test_ext_commands(module_daemon: DaemonProcess) -> None:
    assert ok(module_daemon, "ext", "register", "cli-x")["success"] is True
    assert {"extensionId": "cli-x"} in ok(module_daemon, "ext", "list")
    assert ok(module_daemon, "ext", "deregister", "cli-x")["success"] is True
    assert {"extensionId": "cli-x"} not in ok(module_daemon, "ext", "list")


def test_character_commands(module_daemon: DaemonProcess, ext: str) -> None:
    assert [c["id"] for c in ok(module_daemon, "chars", ext)] == ["c1"]
    assert ok(module_daemon, "char", "get", ext, "c1")["character"]["name"] == "Alice"
    assert ok(module_daemon, "char", "set", ext, "c1")["name"] == "Alice"
    assert ok(module_daemon, "char", "rm", ext, "c1") == {"success": True}
    assert ok(module_daemon, "chars", ext) == []


def test_instance_commands(module_daemon: DaemonProcess, ext: str) -> None:
    assert ok(module_daemon, "inst", "set", ext, "i2", "c1", "--name", "two")["name"] == "two"
    assert [i["id"] for i in ok(module_daemon, "inst", "list", ext, "c1")] == ["i1", "i2"]
    assert ok(module_daemon, "inst", "get", ext, "i2")["data"] == {}
    assert ok(module_daemon, "inst", "rm", ext, "i2") == {"success": True}
    assert ok(module_daemon, "inst", "rm-all", ext, "c1") == {"success": True, "deletedCount": 1}


def test_data_commands(module_daemon: DaemonProcess, ext: str, tmp_path: Path) -> None:
    assert ok(module_daemon, "data", "set", ext, "i1", "s", '"123"')["value"] == "123"
    assert ok(module_daemon, "data", "set", ext, "i1", "n", "123")["value"] == 123
    assert ok(module_daemon, "data", "get", ext, "i1", "s") == {"s": "123"}
    assert ok(module_daemon, "data", "merge", ext, "i1", '{"m": [1]}')["success"] is True
    source = tmp_path / "data.json"
    source.write_text('{"f": true}')
    assert ok(module_daemon, "data", "merge", ext, "i1", f"@{source}")["success"] is True
    assert ok(module_daemon, "data", "get", ext, "i1") == {
        "s": "123",
        "n": 123,
        "m": [1],
        "f": True,
    }
    assert ok(module_daemon, "data", "del", ext, "i1", "f") == {"success": True}
    assert ok(module_daemon, "data", "remove", ext, "i1", "m", "zz") == {
        "success": True,
        "removedCount": 1,
    }
    assert ok(module_daemon, "data", "override", ext, "i1", "-", stdin='{"o": 1}')["success"]
    assert ok(module_daemon, "data", "get", ext, "i1") == {"o": 1}
    assert ok(module_daemon, "data", "clear", ext, "i1") == {"success": True}


def test_call_escape_hatch(module_daemon: DaemonProcess, ext: str) -> None:
    ok(module_daemon, "call", "data.set", f"extensionId={ext}", "id=i1", "key=k", "value:=[1,2]")
    assert ok(module_daemon, "call", "cross.data.get", f"extensionId={ext}", "id=i1") == {
        "k": [1, 2]
    }
    params = json.dumps({"extensionId": ext, "id": "i1", "key": "k"})
    assert ok(module_daemon, "call", "data.getKey", "--params", params) == {"k": [1, 2]}


def test_daemon_error_exits_1_naming_code_and_field(module_daemon: DaemonProcess, ext: str) -> None:
    result = vtctl(module_daemon, "data", "set", ext, "i1", "k" * 1025, "1")
    assert result.returncode == 1
    assert "-32602" in result.stderr
    assert "key" in result.stderr
    assert result.stdout == ""
    missing = vtctl(module_daemon, "data", "get", ext, "nope")
    assert missing.returncode == 1
    assert "-32002" in missing.stderr


def test_usage_errors_exit_2(module_daemon: DaemonProcess, ext: str) -> None:
    assert vtctl(module_daemon, "frobnicate").returncode == 2
    assert vtctl(module_daemon, "char", "get", ext).returncode == 2
    bad_json = vtctl(module_daemon, "data", "set", ext, "i1", "k", "not json")
    assert bad_json.returncode == 2
    assert "quote it" in bad_json.stderr


def test_unreachable_daemon_exits_3(short_dir: Path) -> None:
    result = vtctl(None, "ping", socket=short_dir / "none.sock")
    assert result.returncode == 3
    assert str(short_dir / "none.sock") in result.stderr


def test_pretty_output_on_request(module_daemon: DaemonProcess) -> None:
    result = vtctl(module_daemon, "--pretty", "ping")
    assert result.stdout == '{\n  "message": "Pong!"\n}\n'


def test_options_may_follow_the_command(module_daemon: DaemonProcess, short_dir: Path) -> None:
    result = vtctl(module_daemon, "ping", "--pretty")
    assert result.stdout == '{\n  "message": "Pong!"\n}\n'
    # After the command, an option overrides the one before it...
    moved = vtctl(None, "data", "get", "x", "i", "--socket", str(module_daemon.socket_path))
    assert moved.returncode == 1, moved.stderr  # reached the daemon: unknown extension
    # ...and one left out keeps the value given before the command.
    kept = vtctl(None, "ping", "--timeout", "5", socket=short_dir / "none.sock")
    assert kept.returncode == 3
    assert str(short_dir / "none.sock") in kept.stderr


def test_help_lists_the_commands() -> None:
    result = subprocess.run([str(VTCTL), "--help"], capture_output=True, text=True, timeout=30)
    for command in ("ping", "ext", "chars", "char", "inst", "data", "call"):
        assert command in result.stdout


def test_terminal_output_is_indented_and_coloured(module_daemon: DaemonProcess) -> None:
    import pty

    leader, follower = pty.openpty()
    try:
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        process = subprocess.run(
            [str(VTCTL), "--socket", str(module_daemon.socket_path), "ping"],
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=30,
            env=env,
        )
        assert process.returncode == 0
        output = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert "\x1b[" in output
    assert "\n" in output.strip()


def test_version() -> None:
    result = subprocess.run([str(VTCTL), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("vtctl ")
