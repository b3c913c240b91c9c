"""Typed views of the protocol's objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

JSON = Any
"""Any JSON value: data values come back exactly as stored."""


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class Character:
    """A character: ``name`` may be ``None``; timestamps are timezone-aware UTC."""

    id: str
    name: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Character:
        """Build from the protocol's ``Character`` object."""
        return cls(
            obj["id"], obj["name"], _timestamp(obj["createdAt"]), _timestamp(obj["updatedAt"])
        )


@dataclass(frozen=True, slots=True)
class Instance:
    """An instance of a character."""

    id: str
    character_id: str
    name: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Instance:
        """Build from the protocol's ``Instance`` object."""
        return cls(
            obj["id"],
            obj["characterId"],
            obj["name"],
            _timestamp(obj["createdAt"]),
            _timestamp(obj["updatedAt"]),
        )


@dataclass(frozen=True, slots=True)
class FullInstance:
    """An instance with all its data."""

    instance: Instance
    data: dict[str, JSON]

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> FullInstance:
        """Build from the protocol's ``FullInstance`` object."""
        return cls(Instance.from_wire(obj["instance"]), obj["data"])


@dataclass(frozen=True, slots=True)
class FullCharacter:
    """A character with every instance and its data."""

    character: Character
    instances: list[FullInstance]

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> FullCharacter:
        """Build from the protocol's ``FullCharacter`` object."""
        return cls(
            Character.from_wire(obj["character"]),
            [FullInstance.from_wire(item) for item in obj["instances"]],
        )
