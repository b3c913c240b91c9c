"""JSON text in and out: strict parsing, compact encoding, nesting depth.

The protocol stores values as compact JSON text and sends every message as
one line, so these helpers are shared by the wire layer and the storage
layer. Parsing is strict: NaN, Infinity and numbers that overflow a float
are not JSON values, and are refused rather than stored as something else.

Stored values are already canonical JSON text, so reads hand them on as
``RawJSON`` and ``dumps`` places that text into the answer as it is: no
parsing in the reader, no re-encoding on the event loop (for an instance
with 100 keys, this was most of the cost of reading it).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any

_decoder = json.JSONDecoder(
    parse_constant=lambda name: _refuse_constant(name),
    parse_float=lambda text: _finite_float(text),
)


class RawJSON:
    """Canonical JSON text to be placed into an encoded document unchanged."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawJSON({self.text!r})"


# RawJSON values are first encoded as a placeholder string, then replaced by
# their text. The placeholder holds a secret random nonce (it never appears in
# any output), so no stored string can be mistaken for one.
_NONCE = secrets.token_hex(16)
_HOLE = '"\\u0000' + _NONCE
"""How a placeholder starts in encoded text; its number and closing quote follow."""
_holes = threading.local()


def _placeholder(obj: Any) -> str:
    if not isinstance(obj, RawJSON):
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
    holes: list[str] = _holes.texts
    holes.append(obj.text)
    return f"\0{_NONCE}{len(holes) - 1}"


def _compact_encoder(*, ensure_ascii: bool) -> Callable[[Any], str]:
    """Compact, strict encoding, ``RawJSON`` as placeholders.

    ``JSONEncoder.encode`` makes a new C encoder for every call, and keeps a
    dict of the containers it is in to refuse cycles; made once, without
    that dict (decoded JSON and the answers built from it hold no cycles),
    the C encoder takes 40% less time for a small answer.
    """
    if c_make_encoder is None:  # a Python built without the _json module
        encoder = json.JSONEncoder(
            ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=False, default=_placeholder
        )
        return encoder.encode
    strings = encode_basestring_ascii if ensure_ascii else encode_basestring
    encode = c_make_encoder(None, _placeholder, strings, None, ":", ",", False, False, False)
    return lambda value: "".join(encode(value, 0))


_compact = _compact_encoder(ensure_ascii=False)
_compact_ascii = _compact_encoder(ensure_ascii=True)


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
    """Encode compactly as UTF-8-safe text, with ``RawJSON`` parts placed as they are.

    Non-ASCII characters stay as they are, except when the value holds lone
    surrogates (valid in JSON escapes, not encodable as UTF-8): then the
    whole text is ASCII-escaped so it still round-trips exactly.
    """
    holes: list[str] = []
    _holes.texts = holes
    text = _compact(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            holes.clear()
            text = _compact_ascii(value)
    if holes:
        pieces = text.split(_HOLE)
        parts = [pieces[0]]
        for piece in pieces[1:]:
            number, rest = piece.split('"', 1)
            parts += (holes[int(number)], rest)
        text = "".join(parts)
    return text


def object_text(items: list[tuple[str, str]]) -> RawJSON:
    """A JSON object from keys and values that are already JSON text."""
    # Keys were checked when stored (no lone surrogates), so the plain string
    # encoder is all a key needs: the full encoder costs twice as much per key.
    quote = json.encoder.encode_basestring
    return RawJSON("{" + ",".join(f"{quote(key)}:{value}" for key, value in items) + "}")


_CONTAINERS = (dict, list)
"""A tuple, not ``dict | list``: that expression makes a new union on every use."""


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Tell whether ``value`` nests arrays or objects deeper than ``limit``.

    A scalar has depth 0 and ``[]`` depth 1. The walk is iterative, level by
    level, so that no input, however deep, can exhaust the interpreter's
    stack.
    """
    if not isinstance(value, _CONTAINERS):
        return False
    # Depth by depth: ``level`` holds the containers at ``depth``.
    level: list[Any] = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        deeper: list[Any] = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, _CONTAINERS):
                    deeper.append(child)  # noqa: PERF401 (a generator in extend costs 50% more)
        level = deeper
        depth += 1
    return False
