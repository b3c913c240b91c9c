"""Checking request params against the protocol's rules.

Each method declares its params as ``Param`` objects; the ``checker`` made
from them turns the raw params object into checked values or raises
``InvalidParam`` naming the top-level field at fault and the reason, so
callers can fix their request without guessing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vtd import jsontext
from vtd.errors import InvalidParam

MAX_KEY_LENGTH = 1024
MAX_NAME_LENGTH = 1024
MAX_VALUE_DEPTH = 256

_EXTENSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ENTITY_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")

Check = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class Param:
    """One named param: its check, and whether it may be left out (then ``None``)."""

    name: str
    check: Check
    optional: bool = False


def checker(spec: tuple[Param, ...]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The check of a method's raw params against ``spec``, made once per method.

    It answers the checked values keyed by param name, or raises
    ``InvalidParam`` for the first unknown param, else the first bad or
    missing one.
    """
    names = frozenset(param.name for param in spec)
    expected = ", ".join(sorted(names)) or "no params"

    def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
        if not params.keys() <= names:
            for name in params:
                if name not in names:
                    raise InvalidParam(name, f"unknown param (this method takes {expected})")
        values: dict[str, Any] = {}
        for param in spec:
            name = param.name
            if name in params:
                values[name] = param.check(name, params[name])
            elif param.optional:
                values[name] = None
            else:
                raise InvalidParam(name, "is required")
        return values

    return check_params


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _pattern_id(pattern: re.Pattern[str], limit: int) -> Check:
    def check(field: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidParam(field, f"must be a string, not {_describe(value)}")
        if not pattern.fullmatch(value):
            if not value:
                raise InvalidParam(field, "must not be empty")
            if len(value) > limit:
                raise InvalidParam(field, f"is longer than {limit} characters")
            raise InvalidParam(field, "may contain only letters A-Z and a-z, digits, '_' and '-'")
        return value

    return check


extension_id = _pattern_id(_EXTENSION_ID, 128)
"""An ``extensionId``: ``[A-Za-z0-9_-]{1,128}``."""

entity_id = _pattern_id(_ENTITY_ID, 256)
"""A character or instance id: ``[A-Za-z0-9_-]{1,256}``."""


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"is {_describe(key)}, not a string"
    if not key:
        return "is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"'{key[:20]}…' is longer than {MAX_KEY_LENGTH}"
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate"
    return None


def key(field: str, value: Any) -> str:
    """A data key: a non-empty string of at most 1024 code points, valid Unicode."""
    problem = _key_problem(value)
    if problem is not None:
        raise InvalidParam(field, f"key {problem}")
    return value  # type: ignore[no-any-return]


def name(field: str, value: Any) -> str | None:
    """An optional display name: a string of at most 1024 characters, or null."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParam(field, f"must be a string or null, not {_describe(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidParam(field, f"is longer than {MAX_NAME_LENGTH} characters")
    return value


def text(field: str, value: Any) -> str:
    """Any string."""
    if not isinstance(value, str):
        raise InvalidParam(field, f"must be a string, not {_describe(value)}")
    return value


def value(field: str, item: Any) -> Any:
    """A data value: any JSON value nested at most 256 levels deep."""
    if jsontext.nesting_exceeds(item, MAX_VALUE_DEPTH):
        raise InvalidParam(field, f"value is nested deeper than {MAX_VALUE_DEPTH} levels")
    return item


def data_object(field: str, item: Any) -> dict[str, Any]:
    """An object of key to value, each key and value checked as for ``data.set``."""
    if not isinstance(item, dict):
        raise InvalidParam(field, f"must be an object of keys to values, not {_describe(item)}")
    for k, v in item.items():
        problem = _key_problem(k)
        if problem is not None:
            raise InvalidParam(field, f"key {problem}")
        if jsontext.nesting_exceeds(v, MAX_VALUE_DEPTH):
            raise InvalidParam(
                field, f"value of key '{k[:20]}' is nested deeper than {MAX_VALUE_DEPTH} levels"
            )
    return item


def key_list(field: str, item: Any) -> list[str]:
    """An array of data keys."""
    if not isinstance(item, list):
        raise InvalidParam(field, f"must be an array of strings, not {_describe(item)}")
    for index, k in enumerate(item):
        if not isinstance(k, str):
            raise InvalidParam(field, f"{field}[{index}] is not a string")
        problem = _key_problem(k)
        if problem is not None:
            raise InvalidParam(field, f"{field}[{index}] {problem}")
    return item
