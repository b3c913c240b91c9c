"""The protocol's error codes, in one place (spec section 6)."""

from __future__ import annotations

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NOT_REGISTERED = -32001
NOT_FOUND = -32002
BUSY = -32003
STORAGE_UNAVAILABLE = -32004
