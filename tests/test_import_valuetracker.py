"""``vtctl import-valuetracker``: the old plugin's databases, copied into a real daemon."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.wire import DaemonProcess
from vtd_client import Client

VTCTL = Path(sys.executable).parent / "vtctl"
_names = itertools.count()

# The tables as the valuetracker plugin created them.
OLD_SCHEMA = """
CREATE TABLE characters (
  id TEXT PRIMARY KEY, name TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP, updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE instances (
  id TEXT PRIMARY KEY, character_id TEXT NOT NULL, name TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP, updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  FOREIGN KEY (character_id) REFERENCES characters (id) ON DELETE CASCADE
);
CREATE TABLE data (
  instance_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP, updated_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (instance_id, key),
  FOREIGN KEY (instance_id) REFERENCES instances (id) ON DELETE CASCADE
);
"""


def old_database(
    path: Path,
    characters: list[tuple[str, str | None]],
    instances: list[tuple[str, str, str | None]],
    values: list[tuple[str, str, str | None]],
) -> Path:
    """A database as the plugin left it: values already in its text form."""
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.executemany("INSERT INTO characters (id, name) VALUES (?, ?)", characters)
        conn.executemany(
            "INSERT INTO instances (id, character_id, name) VALUES (?, ?, ?)", instances
        )
        conn.executemany(
            "INSERT OR REPLACE INTO data (instance_id, key, value) VALUES (?, ?, ?)", values
        )
    conn.close()
    return path


def vtctl(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VTCTL), "--socket", str(daemon.socket_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )


def imported(daemon: DaemonProcess, *args: str) -> Any:
    result = vtctl(daemon, "import-valuetracker", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_everything_readable_through_the_old_api_is_imported(
    module_daemon: DaemonProcess, tmp_path: Path
) -> None:
    name = f"old{next(_names)}"
    source = old_database(
        tmp_path / f"{name}.db",
        characters=[("alice", "Alice"), ("bob", None)],
        instances=[("chat-1", "alice", "First"), ("chat-2", "bob", None), ("lost", "gone", None)],
        values=[
            ("chat-1", "stats", '{"hp":5,"tags":["a","b"]}'),
            ("chat-1", "mood", "calm"),
            ("chat-1", "hp", "123"),
            ("chat-1", "alive", "true"),
            ("chat-1", "nothing", None),
            ("chat-1", "weird", "NaN"),
            ("chat-2", "turn", "7"),
            ("lost", "x", "1"),
            ("nobody", "y", "2"),
        ],
    )
    before = hashlib.sha256(source.read_bytes()).hexdigest()

    [report] = imported(module_daemon, str(source))

    assert report == {
        "extensionId": name,
        "source": str(source),
        "characters": 2,
        "instances": 2,
        "values": 7,
        "skippedInstances": ["lost"],
        "skippedValues": 2,
    }
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before  # read, never changed
    with Client(module_daemon.socket_path) as client:
        tracker = client.extension(name)
        assert [(c.id, c.name) for c in tracker.list_characters()] == [
            ("alice", "Alice"),
            ("bob", None),
        ]
        assert [(i.id, i.name) for i in tracker.list_instances("alice")] == [("chat-1", "First")]
        data = tracker.get_data("chat-1")
        # As the plugin answered them: JSON parsed, anything else the text itself.
        assert data == {
            "stats": {"hp": 5, "tags": ["a", "b"]},
            "mood": "calm",
            "hp": 123,
            "alive": True,
            "nothing": None,
            "weird": "NaN",
        }
        assert list(data) == ["stats", "mood", "hp", "alive", "nothing", "weird"]
        assert tracker.get_data("chat-2") == {"turn": 7}


def test_an_import_run_twice_leaves_the_same_data(
    module_daemon: DaemonProcess, tmp_path: Path
) -> None:
    many = [("i", f"k{n}", str(n)) for n in range(2500)]  # more than one merge call
    source = old_database(tmp_path / "twice.db", [("c", None)], [("i", "c", None)], many)
    ext = f"twice{next(_names)}"
    first = imported(module_daemon, "--extension", ext, str(source))
    second = imported(module_daemon, "--extension", ext, str(source))
    assert first == second
    assert first[0]["values"] == 2500
    with Client(module_daemon.socket_path) as client:
        data = client.extension(ext).get_data("i")
    assert data == {f"k{n}": n for n in range(2500)}


def test_several_files_are_named_after_their_extensions(
    module_daemon: DaemonProcess, tmp_path: Path
) -> None:
    names = [f"multi{next(_names)}" for _ in range(2)]
    paths = [str(old_database(tmp_path / f"{n}.db", [("c", None)], [], [])) for n in names]
    reports = imported(module_daemon, *paths)
    assert [r["extensionId"] for r in reports] == names
    with Client(module_daemon.socket_path) as client:
        assert set(names) <= set(client.list_extensions())


def test_a_file_that_is_not_the_plugins_database_is_refused(
    module_daemon: DaemonProcess, tmp_path: Path
) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database at all\n" * 100)
    result = vtctl(module_daemon, "import-valuetracker", str(text))
    assert result.returncode == 2
    assert result.stderr.startswith(f"vtctl: {text}: cannot read it")

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE characters (id TEXT)")
    conn.close()
    result = vtctl(module_daemon, "import-valuetracker", str(other))
    assert result.returncode == 2
    assert "not a valuetracker database (no data, instances table)" in result.stderr

    result = vtctl(module_daemon, "import-valuetracker", str(tmp_path / "missing.db"))
    assert (result.returncode, result.stderr.strip()) == (
        2,
        f"vtctl: {tmp_path / 'missing.db'}: no such file",
    )


def test_one_extension_name_for_several_files_is_a_usage_error(
    module_daemon: DaemonProcess,
) -> None:
    result = vtctl(module_daemon, "import-valuetracker", "--extension", "x", "a.db", "b.db")
    assert result.returncode == 2
    assert "--extension names one extension: give it one FILE" in result.stderr


def test_an_id_vtd_refuses_stops_the_import_and_says_to_rerun(
    module_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = old_database(tmp_path / f"bad{next(_names)}.db", [("ok", None), ("", None)], [], [])
    result = vtctl(module_daemon, "import-valuetracker", str(source))
    assert result.returncode == 1
    assert "error -32602" in result.stderr
    assert "[field: id]" in result.stderr
    assert "run the import again" in result.stderr
