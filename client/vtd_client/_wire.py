"""Building request lines and reading response objects, for both clients."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from vtd_client._errors import ProtocolError, RpcError, error_from_response

Request = tuple[str, dict[str, Any]]
"""A method name and its params, as given to ``batch``."""


def encode(message: Any) -> bytes:
    """One message as a line of bytes."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def request(method: str, params: dict[str, Any], request_id: int) -> dict[str, Any]:
    """A JSON-RPC 2.0 request object."""
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}


def batch_requests(requests: Iterable[Request], first_id: int) -> list[dict[str, Any]]:
    """A batch of requests with consecutive ids from ``first_id``."""
    return [request(method, params, first_id + n) for n, (method, params) in enumerate(requests)]


def result_of(response: Any) -> Any:
    """The result of a response object, or raise its error."""
    if not isinstance(response, dict):
        raise ProtocolError(0, f"malformed response {response!r}")
    if "error" in response:
        raise error_from_response(response["error"])
    return response.get("result")


def batch_results(
    sent: list[dict[str, Any]], responses: Any, *, return_exceptions: bool
) -> list[Any]:
    """Results in the order the batch was sent; errors raised, or returned if asked."""
    if isinstance(responses, dict):  # one error for the whole batch
        raise error_from_response(responses.get("error"))
    if not isinstance(responses, list):
        raise ProtocolError(0, f"malformed batch response {responses!r}")
    by_id = {item.get("id"): item for item in responses if isinstance(item, dict)}
    results: list[Any] = []
    for item in sent:
        try:
            if item["id"] not in by_id:
                raise ProtocolError(0, f"the daemon did not answer request {item['id']}")
            results.append(result_of(by_id[item["id"]]))
        except RpcError as exc:
            if not return_exceptions:
                raise
            results.append(exc)
    return results


def response_ids(response: Any) -> list[Any]:
    """The ids a response line answers (several for a batch)."""
    if isinstance(response, list):
        return [item.get("id") for item in response if isinstance(item, dict)]
    if isinstance(response, dict):
        return [response.get("id")]
    return []
