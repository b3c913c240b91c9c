"""Importing the databases of the old valuetracker SillyTavern plugin into vtd.

That plugin kept one SQLite file per extension, ``db/<extensionId>.db``
under SillyTavern's directory, with ``characters``, ``instances`` and
``data`` tables. ``import_database`` reads one such file (read-only, never
changing it) and writes its contents through the daemon, so that vtd's
guarantees hold for imported values as for any other: every call is an
upsert or a merge, so an import that stopped halfway can simply be run
again.

Values come back as the plugin answered them: it stored objects and arrays
as JSON and everything else as text, and gave back whatever parsed as JSON
as parsed, the rest as strings (so the string ``"123"`` it stored comes
back as the number ``123``, as it always did). Characters and instances get
new ``createdAt``/``updatedAt`` times: the daemon sets them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtd_client._sync import Client

MERGE_KEYS = 1000
"""Values sent in one ``data.merge``: large instances go in several calls."""

_TABLES = {"characters", "instances", "data"}


class NotAValuetrackerDatabase(Exception):
    """The file cannot be read, or is not a database the valuetracker plugin made."""


@dataclass
class ImportReport:
    """What one import wrote, and what it had to leave out."""

    extension_id: str
    source: str
    characters: int = 0
    instances: int = 0
    values: int = 0
    orphan_instances: list[str] = field(default_factory=list)
    """Instances whose character no longer exists (the plugin never enforced it): not imported."""
    orphan_values: int = 0
    """Values of instances that no longer exist: not imported."""

    def as_json(self) -> dict[str, Any]:
        """The report as the protocol would spell it (camelCase)."""
        return {
            "extensionId": self.extension_id,
            "source": self.source,
            "characters": self.characters,
            "instances": self.instances,
            "values": self.values,
            "skippedInstances": self.orphan_instances,
            "skippedValues": self.orphan_values,
        }


def import_database(client: Client, path: Path, extension_id: str | None = None) -> ImportReport:
    """Register the extension and write every character, instance and value of ``path``.

    ``extension_id`` defaults to the file's name without ``.db``, as the
    plugin named its files.
    """
    report = ImportReport(extension_id or path.stem, str(path))
    characters, instances, values = _read(path)
    extension = client.extension(report.extension_id)
    extension.register()
    for character_id, name in characters:
        extension.upsert_character(character_id, name=name)
        report.characters += 1
    known_characters = {character_id for character_id, _ in characters}
    imported: set[str] = set()
    for instance_id, character_id, name in instances:
        if character_id not in known_characters:
            report.orphan_instances.append(instance_id)
            continue
        extension.upsert_instance(instance_id, character_id=character_id, name=name)
        imported.add(instance_id)
        report.instances += 1
    for instance_id, data in values.items():
        if instance_id not in imported:
            report.orphan_values += len(data)
            continue
        items = list(data.items())
        for start in range(0, len(items), MERGE_KEYS):
            extension.merge_data(instance_id, dict(items[start : start + MERGE_KEYS]))
        report.values += len(items)
    return report


Rows = tuple[
    list[tuple[str, str | None]], list[tuple[str, str, str | None]], dict[str, dict[str, Any]]
]


def _read(path: Path) -> Rows:
    """Characters, instances and each instance's values, in the order they were created."""
    if not path.is_file():
        raise NotAValuetrackerDatabase(f"{path}: no such file")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NotAValuetrackerDatabase(f"{path}: cannot open it: {exc}") from None
    try:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        missing = _TABLES - tables
        if missing:
            raise NotAValuetrackerDatabase(
                f"{path}: not a valuetracker database (no {', '.join(sorted(missing))} table)"
            )
        characters = conn.execute("SELECT id, name FROM characters ORDER BY rowid").fetchall()
        instances = conn.execute(
            "SELECT id, character_id, name FROM instances ORDER BY rowid"
        ).fetchall()
        values: dict[str, dict[str, Any]] = {}
        for instance_id, key, text in conn.execute(
            "SELECT instance_id, key, value FROM data ORDER BY rowid"
        ):
            values.setdefault(instance_id, {})[key] = _as_answered(text)
    except sqlite3.DatabaseError as exc:
        raise NotAValuetrackerDatabase(f"{path}: cannot read it: {exc}") from None
    finally:
        conn.close()
    return characters, instances, values


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _as_answered(text: str | None) -> Any:
    """A stored value as the plugin answered it: parsed if it is JSON, else the text."""
    if text is None:
        return None
    try:
        # JavaScript's JSON.parse, which the plugin used, knows no NaN or Infinity.
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text
