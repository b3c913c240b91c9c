"""``vtctl import-valuetracker``: the old plugin's databases, copied into a real daemon."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.wire import DaemonProcess
from vtd_client import Client

VTCTL = Path(sys.executable).parent / "vtctl"
NODE = shutil.which("node")
NODE_DIR = Path(__file__).resolve().parent.parent / "client" / "node"
_names = itertools.count()

# The tables as the valuetracker plugin's earlier releases created them, with
# cascading deletes; tests/valuetracker_sqljs.js writes its sql.js releases'
# tables (no cascades, two indexes) with sql.js itself.
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


@pytest.mark.skipif(
    NODE is None or not (NODE_DIR / "node_modules" / "sql.js").is_dir(),
    reason="needs node and sql.js: run `npm ci --prefix client/node` (.ci/run does)",
)
def test_a_file_written_by_sql_js_as_the_plugin_wrote_it_is_imported(
    module_daemon: DaemonProcess, tmp_path: Path
) -> None:
    # The plugin's later releases kept each database in sql.js's memory and
    # wrote the whole file out: made here by sql.js itself, from the values a
    # browser extension sent.
    name = f"sqljs{next(_names)}"
    source = tmp_path / f"{name}.db"
    sent = {
        "object": {"hp": 5, "tags": ["a"]},
        "list": [1, "two"],
        "number": 123,
        "numeric string": "123",
        "flag": True,
        "null": None,
        "text": "hello, world",
    }
    contents = {
        "characters": [["alice", "Alice"]],
        "instances": [["chat-1", "alice", "First"]],
        "values": [["chat-1", key, value] for key, value in sent.items()],
    }
    assert NODE is not None
    subprocess.run(
        [NODE, str(Path(__file__).parent / "valuetracker_sqljs.js"), str(source)],
        input=json.dumps(contents),
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")},
    )

    [report] = imported(module_daemon, str(source))

    assert (report["characters"], report["instances"], report["values"]) == (1, 1, len(sent))
    with Client(module_daemon.socket_path) as client:
        data = client.extension(name).get_data("chat-1")
    # What the plugin answered for each: "123" came back as a number there too.
    assert data == {**sent, "numeric string": 123}


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


def test_a_file_named_for_an_id_vtd_refuses_says_how_to_name_it(
    module_daemon: DaemonProcess, tmp_path: Path
) -> None:
    source = old_database(tmp_path / "my.tracker.db", [("c", None)], [], [])
    result = vtctl(module_daemon, "import-valuetracker", str(source))
    assert result.returncode == 1
    assert "[field: extensionId]" in result.stderr
    assert "import it alone with --extension NAME" in result.stderr
    [report] = imported(module_daemon, "--extension", "my-tracker", str(source))
    assert report["characters"] == 1
