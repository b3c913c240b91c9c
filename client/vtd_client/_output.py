"""Printing JSON for people (indented, coloured) or for pipes (compact)."""

from __future__ import annotations

import json
from typing import Any

_KEY, _STRING, _NUMBER, _LITERAL, _RESET = "\x1b[34m", "\x1b[32m", "\x1b[36m", "\x1b[35m", "\x1b[0m"


def render(value: Any, *, pretty: bool, color: bool) -> str:
    """``value`` as JSON text: compact on one line, or indented and optionally coloured."""
    if not pretty:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if not color:
        return json.dumps(value, ensure_ascii=False, indent=2)
    return _colored(value, 0)


def _colored(value: Any, depth: int) -> str:
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{_KEY}{json.dumps(k, ensure_ascii=False)}{_RESET}: {_colored(v, depth + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value:
        items = [f"{inner}{_colored(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    text = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return f"{_STRING}{text}{_RESET}"
    if isinstance(value, bool) or value is None:
        return f"{_LITERAL}{text}{_RESET}"
    if isinstance(value, int | float):
        return f"{_NUMBER}{text}{_RESET}"
    return text
