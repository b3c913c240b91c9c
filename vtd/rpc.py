"""JSON-RPC 2.0 messages: from one line of bytes to the line of the answer.

``decode`` turns a line into a ``Message``: the requests it holds (one, or
a batch's elements), or the error that answers the whole line. Each request
is then answered by ``answer``, which checks the envelope and has
jsonrpcserver call the method from ``vtd.methods`` and shape its result,
or by ``answer_now``, which does the same with jsonrpcserver's synchronous
``call`` for the methods that can answer without waiting. ``encode`` turns
responses back into one line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from jsonrpcserver import Result
from jsonrpcserver.async_dispatcher import call as call_awaited
from jsonrpcserver.dispatcher import call as call_now
from jsonrpcserver.dispatcher import create_request
from jsonrpcserver.response import (
    ErrorResponse,
    SuccessResponse,
    serialize_error,
    serialize_success,
)
from jsonrpcserver.sentinels import NODATA, NOID
from oslash.either import Left

from vtd import jsontext
from vtd.codes import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR

log = logging.getLogger(__name__)


MAX_MESSAGE_DEPTH = 512

Response = dict[str, Any]


@dataclass(frozen=True, slots=True)
class MethodTables:
    """The methods for jsonrpcserver's two dispatchers, by wire name."""

    awaited: dict[str, Callable[..., Awaitable[Result]]]
    """Every method, as a coroutine function."""
    immediate: dict[str, Callable[..., Result]]
    """The methods that may answer without waiting, as plain functions."""


class _NotNow(Enum):
    LATER = "later"
    PENDING = "pending"


LATER: Final = _NotNow.LATER
"""``answer_now``'s word for a request it cannot answer without waiting.

An immediate method that finds it must wait returns it too; the request is
then answered by ``answer``, from a task.
"""

PENDING: Final = _NotNow.PENDING
"""What an immediate method returns, and ``answer_now`` answers, when the
answer comes later by way of the request's context (a write's commit)."""

_ENVELOPE_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_ID_TYPES = (str, int, float, type(None))
"""A tuple, not a union: ``str | int | ...`` makes new unions on every request."""


def error_response(code: int, message: str, data: Any = None, id: Any = None) -> Response:
    """A JSON-RPC error response object."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": id}


# Not frozen, though never changed: one is made per line, and a frozen
# dataclass takes three times as long to make.
@dataclass(slots=True)
class Message:
    """One decoded line: its requests, whether it was a batch, or the error answering it."""

    requests: list[Any]
    batch: bool = False
    error: Response | None = None


def decode(line: bytes, *, max_batch: int) -> Message:
    """Parse one line (without its newline) into the requests it carries."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _whole(PARSE_ERROR, "Parse error: the message is not valid UTF-8", exc.reason)
    try:
        parsed = jsontext.loads(text)
    except jsontext.JsonTextError as exc:
        return _whole(PARSE_ERROR, "Parse error: the message is not valid JSON", str(exc))
    except RecursionError:
        return _too_deep()
    if line.count(b"[") + line.count(b"{") > MAX_MESSAGE_DEPTH and jsontext.nesting_exceeds(
        parsed, MAX_MESSAGE_DEPTH
    ):
        return _too_deep()
    if not isinstance(parsed, list):
        return Message([parsed])
    if not parsed:
        return _whole(INVALID_REQUEST, "Invalid request: an empty batch", "batch is empty")
    if len(parsed) > max_batch:
        return _whole(
            INVALID_REQUEST,
            f"Invalid request: a batch holds at most {max_batch} requests, this one "
            f"{len(parsed)}; split it",
            f"batch has {len(parsed)} requests",
        )
    return Message(parsed, batch=True)


def _whole(code: int, message: str, reason: str) -> Message:
    return Message([], error=error_response(code, message, {"reason": reason}))


def _too_deep() -> Message:
    return _whole(
        INVALID_REQUEST,
        f"Invalid request: the message is nested deeper than {MAX_MESSAGE_DEPTH} levels",
        "too deeply nested",
    )


def _envelope_error(request: Any) -> Response | None:
    if not isinstance(request, dict):
        return error_response(
            INVALID_REQUEST,
            "Invalid request: a request must be a JSON object",
            {"reason": "not an object"},
        )
    request_id = request.get("id")
    if "id" in request and (isinstance(request_id, bool) or not isinstance(request_id, _ID_TYPES)):
        return error_response(
            INVALID_REQUEST,
            "Invalid request: id must be a string, a number or null",
            {"field": "id", "reason": "bad type"},
        )
    if request.get("jsonrpc") != "2.0":
        return _invalid_member("jsonrpc", 'must be "2.0"', request_id)
    if not isinstance(request.get("method"), str):
        return _invalid_member("method", "must be a string", request_id)
    if not request.keys() <= _ENVELOPE_MEMBERS:
        unknown = sorted(request.keys() - _ENVELOPE_MEMBERS)[0]
        return _invalid_member(unknown, "is not a JSON-RPC request member", request_id)
    if "params" in request and not isinstance(request["params"], dict):
        return error_response(
            INVALID_PARAMS,
            "Invalid params: params must be an object of named params",
            {"field": "params", "reason": "params must be an object, not an array or a scalar"},
            request_id,
        )
    return None


def _invalid_member(member: str, reason: str, request_id: Any) -> Response:
    return error_response(
        INVALID_REQUEST,
        f"Invalid request: {member} {reason}",
        {"field": member, "reason": reason},
        request_id,
    )


def _refusal(request: Any, error: Response) -> Response | None:
    # An invalid request is always answered; a notification's bad params are not.
    notification = isinstance(request, dict) and "id" not in request
    return None if notification and error["error"]["code"] == INVALID_PARAMS else error


# jsonrpcserver calls the method and turns what it returns or raises into a
# Result (``call``), and shapes the response (``serialize_*``). Its
# ``dispatch_request`` around them also looks up the method's signature to
# bind the params (vtd checks params itself, so binding can never fail) and
# chains each step through an Either, and its ``to_response`` copies the
# result through two named tuples: together 14 of the 19 µs it took a point
# read on a busy machine, so vtd joins the steps itself.
async def answer(request: Any, methods: MethodTables, context: Any) -> Response | None:
    """The response to one request, or ``None`` for a notification."""
    error = _envelope_error(request)
    if error is not None:
        return _refusal(request, error)
    parsed = create_request(request)
    method = methods.awaited.get(parsed.method)
    if method is None:
        return _not_found(parsed)
    return _response(parsed.id, await call_awaited(parsed, context, method))


def answer_now(request: Any, methods: MethodTables, context: Any) -> Response | _NotNow | None:
    """As ``answer``, without waiting: ``LATER`` if the request must wait for its answer.

    ``PENDING`` if its method answers later by other means (``complete``
    then makes the response).
    """
    error = _envelope_error(request)
    if error is not None:
        return _refusal(request, error)
    method = methods.immediate.get(request["method"])
    if method is None:
        return LATER
    parsed = create_request(request)
    result = call_now(parsed, context, method)
    if not isinstance(result, Left):
        value = result._value.result
        if value is LATER or value is PENDING:
            return value
    return _response(parsed.id, result)


def complete(request: Any, result: Result) -> Response | None:
    """The response to a request ``answer_now`` left ``PENDING``, with its ``result``."""
    return _response(request.get("id", NOID), result)


def _not_found(parsed: Any) -> Response | None:
    if parsed.id is NOID:
        return None
    name = parsed.method
    return error_response(
        METHOD_NOT_FOUND, f"Method not found: {name!r}", {"method": name}, parsed.id
    )


def _response(request_id: Any, result: Result) -> Response | None:
    if request_id is NOID:
        return None
    if not isinstance(result, Left):
        return serialize_success(SuccessResponse(result._value.result, request_id))
    error = result._error
    data = error.data
    if data is not NODATA and not isinstance(data, dict):
        log.error("jsonrpcserver answered %r; replacing its data", error)
        data = {"reason": "internal"}
    return serialize_error(ErrorResponse(error.code, error.message, data, request_id))


def encode(response: Response | list[Response]) -> bytes:
    """One response (or a batch of them) as a line of bytes, newline included."""
    return (jsontext.dumps(response) + "\n").encode("utf-8")
