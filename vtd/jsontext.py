"""JSON text in and out: strict parsing, compact encoding, nesting depth.

The protocol stores values as compact JSON text and sends every message as
one line, so these helpers are shared by the wire layer and the storage
layer. Parsing is strict: NaN, Infinity and numbers that overflow a float
are not JSON values, and are refused rather than stored as something else.
"""

from __future__ import annotations

import json
from typing import Any

_decoder = json.JSONDecoder(
    parse_constant=lambda name: _refuse_constant(name),
    parse_float=lambda text: _finite_float(text),
)
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_compact_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


class JsonTextError(ValueError):
    """Text that is not strict JSON; the message says where or why."""


def _refuse_constant(name: str) -> Any:
    raise JsonTextError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JsonTextError(f"number {text[:40]} is too large for a double")
    return value


def loads(text: str) -> Any:
    """Parse strict JSON text; raise ``JsonTextError`` or ``RecursionError``."""
    try:
        return _decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None


def dumps(value: Any) -> str:
    """Encode compactly as UTF-8-safe text.

    Non-ASCII characters stay as they are, except when the value holds lone
    surrogates (valid in JSON escapes, not encodable as UTF-8): then the
    whole text is ASCII-escaped so it still round-trips exactly.
    """
    text = _compact.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _compact_ascii.encode(value)
    return text


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Tell whether ``value`` nests arrays or objects deeper than ``limit``.

    A scalar has depth 0 and ``[]`` depth 1. The walk is iterative so that
    no input, however deep, can exhaust the interpreter's stack.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return False
