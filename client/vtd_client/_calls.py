"""Every protocol method as a ``Call``: its wire name, params, and result type.

The sync and async clients are thin shells over these builders, so the
mapping from Python names to the protocol lives in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from vtd_client._types import JSON, Character, FullCharacter, FullInstance, Instance

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to make, and how to turn its result into ``T``."""

    method: str
    params: dict[str, Any]
    convert: Callable[[Any], T]


def _same(result: Any) -> Any:
    return result


def _nothing(result: Any) -> None:
    return None


def _characters(result: Any) -> list[Character]:
    return [Character.from_wire(item) for item in result]


def _instances(result: Any) -> list[Instance]:
    return [Instance.from_wire(item) for item in result]


def _named(name: str | None) -> dict[str, Any]:
    return {} if name is None else {"name": name}


def register(extension_id: str) -> Call[None]:
    return Call("register", {"extensionId": extension_id}, _nothing)


def deregister(extension_id: str) -> Call[None]:
    return Call("deregister", {"extensionId": extension_id}, _nothing)


def list_extensions() -> Call[list[str]]:
    return Call("extensions.list", {}, lambda r: [item["extensionId"] for item in r])


def ping(message: str | None) -> Call[str]:
    params = {} if message is None else {"message": message}
    return Call("ping", params, lambda r: r["message"])


def probe() -> Call[str]:
    return Call("probe", {}, lambda r: r["version"])


def list_characters(prefix: str, ext: str) -> Call[list[Character]]:
    return Call(f"{prefix}characters.list", {"extensionId": ext}, _characters)


def get_character(prefix: str, ext: str, character_id: str) -> Call[FullCharacter]:
    params = {"extensionId": ext, "id": character_id}
    return Call(f"{prefix}characters.get", params, FullCharacter.from_wire)


def list_instances(prefix: str, ext: str, character_id: str) -> Call[list[Instance]]:
    params = {"extensionId": ext, "characterId": character_id}
    return Call(f"{prefix}instances.list", params, _instances)


def get_instance(prefix: str, ext: str, instance_id: str) -> Call[FullInstance]:
    params = {"extensionId": ext, "id": instance_id}
    return Call(f"{prefix}instances.get", params, FullInstance.from_wire)


def get_data(prefix: str, ext: str, instance_id: str) -> Call[dict[str, JSON]]:
    return Call(f"{prefix}data.get", {"extensionId": ext, "id": instance_id}, _same)


def get_data_key(prefix: str, ext: str, instance_id: str, key: str) -> Call[JSON]:
    params = {"extensionId": ext, "id": instance_id, "key": key}
    return Call(f"{prefix}data.getKey", params, lambda r: r[key])


def upsert_character(ext: str, character_id: str, name: str | None) -> Call[Character]:
    params = {"extensionId": ext, "id": character_id, **_named(name)}
    return Call("characters.upsert", params, Character.from_wire)


def delete_character(ext: str, character_id: str) -> Call[None]:
    return Call("characters.delete", {"extensionId": ext, "id": character_id}, _nothing)


def upsert_instance(
    ext: str, instance_id: str, character_id: str, name: str | None
) -> Call[Instance]:
    params = {"extensionId": ext, "id": instance_id, "characterId": character_id, **_named(name)}
    return Call("instances.upsert", params, Instance.from_wire)


def delete_instance(ext: str, instance_id: str) -> Call[None]:
    return Call("instances.delete", {"extensionId": ext, "id": instance_id}, _nothing)


def delete_all_instances(ext: str, character_id: str) -> Call[int]:
    params = {"extensionId": ext, "characterId": character_id}
    return Call("instances.deleteAll", params, lambda r: r["deletedCount"])


def set_data_key(ext: str, instance_id: str, key: str, value: JSON) -> Call[None]:
    params = {"extensionId": ext, "id": instance_id, "key": key, "value": value}
    return Call("data.set", params, _nothing)


def delete_data_key(ext: str, instance_id: str, key: str) -> Call[None]:
    params = {"extensionId": ext, "id": instance_id, "key": key}
    return Call("data.deleteKey", params, _nothing)


def clear_data(ext: str, instance_id: str) -> Call[bool]:
    return Call("data.clear", {"extensionId": ext, "id": instance_id}, lambda r: r["success"])


def override_data(ext: str, instance_id: str, data: dict[str, JSON]) -> Call[None]:
    params = {"extensionId": ext, "id": instance_id, "data": data}
    return Call("data.override", params, _nothing)


def merge_data(ext: str, instance_id: str, data: dict[str, JSON]) -> Call[None]:
    params = {"extensionId": ext, "id": instance_id, "data": data}
    return Call("data.merge", params, _nothing)


def remove_data_keys(ext: str, instance_id: str, keys: list[str]) -> Call[int]:
    params = {"extensionId": ext, "id": instance_id, "keys": list(keys)}
    return Call("data.remove", params, lambda r: r["removedCount"])
