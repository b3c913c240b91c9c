"""The blocking client: standard library only, one connection, one call at a time."""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypeVar

from vtd_client import _calls as calls
from vtd_client._calls import Call
from vtd_client._errors import (
    CallTimeout,
    ConnectionLost,
    DaemonUnavailable,
    ProtocolError,
)
from vtd_client._paths import refuse_foreign_fallback, socket_path
from vtd_client._types import JSON, Character, FullCharacter, FullInstance, Instance
from vtd_client._wire import (
    Request,
    batch_requests,
    batch_results,
    encode,
    request,
    response_ids,
    result_of,
)

T = TypeVar("T")

READ_SIZE = 65536

_socket = socket.socket  # the name ``socket`` is also Client's parameter


class Client:
    """A blocking vtd client.

    ``socket`` overrides the path (else ``VTD_SOCKET``, the runtime dir, or
    ``/tmp/vtd-$UID``); ``timeout`` bounds each call in seconds. The
    connection opens on the first call and reopens after it drops; a call in
    flight when it drops raises ``ConnectionLost`` and is never resent.
    Thread-safe: calls from several threads take turns.
    """

    def __init__(
        self, socket: str | os.PathLike[str] | None = None, *, timeout: float | None = 30.0
    ) -> None:
        self.socket_path = socket_path(socket)
        self.timeout = timeout
        self._sock: _socket | None = None
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = bytearray()

    def call(self, method: str, /, **params: Any) -> Any:
        """Call any method by its wire name; return its result or raise its error."""
        with self._lock:
            request_id = next(self._ids)
            return result_of(self._exchange(request(method, params, request_id), [request_id]))

    def batch(self, requests: Iterable[Request], *, return_exceptions: bool = False) -> list[Any]:
        """Send ``(method, params)`` pairs as one batch; results in the same order.

        With ``return_exceptions``, a failed element's error takes its place
        in the list instead of being raised.
        """
        with self._lock:
            sent = batch_requests(requests, next(self._ids))
            if not sent:
                return []
            self._ids = itertools.count(sent[-1]["id"] + 1)
            responses = self._exchange(sent, [item["id"] for item in sent])
            return batch_results(sent, responses, return_exceptions=return_exceptions)

    def run(self, call: Call[T]) -> T:
        """Make a prepared ``Call`` and convert its result."""
        return call.convert(self.call(call.method, **call.params))

    # Methods without an extension

    def register(self, extension_id: str) -> None:
        """Register an extension (idempotent; its data comes back if it existed)."""
        self.run(calls.register(extension_id))

    def deregister(self, extension_id: str) -> None:
        """Deregister an extension; its data stays on disk."""
        self.run(calls.deregister(extension_id))

    def list_extensions(self) -> list[str]:
        """Registered extension ids, sorted."""
        return self.run(calls.list_extensions())

    def ping(self, message: str | None = None) -> str:
        """``"Pong!"``, with ``message`` after it if given."""
        return self.run(calls.ping(message))

    def probe(self) -> str:
        """The daemon's version."""
        return self.run(calls.probe())

    def extension(self, extension_id: str) -> Extension:
        """A handle for one extension's reads and writes."""
        return Extension(self, extension_id)

    def cross(self, extension_id: str) -> CrossExtension:
        """A read-only handle on another extension's data (the ``cross.*`` methods)."""
        return CrossExtension(self, extension_id)

    # The connection

    def _exchange(self, message: Any, ids: list[int]) -> Any:
        sock = self._connect()
        try:
            try:
                sock.sendall(encode(message))
            except BaseException:
                # Cut short (Ctrl-C, say): part of the line may have gone out,
                # and the daemon would read the next call's line as its end.
                self.close()
                raise
            while True:
                response = self._read_line(sock)
                if set(response_ids(response)) & set(ids) or response_ids(response) == [None]:
                    return response
        except TimeoutError:
            self.close()  # a late answer would be mistaken for the next call's
            raise CallTimeout(f"vtd did not answer within {self.timeout} s") from None
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"the connection to vtd dropped: {exc}") from exc

    def _connect(self) -> _socket:
        if self._sock is not None and self._hung_up(self._sock):
            self.close()  # dropped while idle (a daemon restart): reopen, nothing was lost
        if self._sock is None:
            refuse_foreign_fallback(self.socket_path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.socket_path))
            except OSError as exc:
                sock.close()
                raise DaemonUnavailable.from_os_error(str(self.socket_path), exc) from exc
            self._sock = sock
        return self._sock

    def _hung_up(self, sock: _socket) -> bool:
        if self._buffer:
            return False
        sock.setblocking(False)
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self.timeout)

    def _read_line(self, sock: _socket) -> Any:
        scanned = 0  # only new bytes are searched: a 30 MB answer took seconds otherwise
        while (newline := self._buffer.find(b"\n", scanned)) < 0:
            scanned = len(self._buffer)
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                raise ConnectionResetError("vtd closed the connection")
            self._buffer += chunk
        line = self._buffer[:newline]
        del self._buffer[: newline + 1]
        try:
            return json.loads(line)
        except ValueError:
            raise ProtocolError(0, "vtd sent a line that is not JSON") from None


class CrossExtension:
    """Read-only access to one extension's data; every method takes that extension's id."""

    _prefix = "cross."

    def __init__(self, client: Client, extension_id: str) -> None:
        self.client = client
        self.extension_id = extension_id

    def list_characters(self) -> list[Character]:
        """Every character, oldest first."""
        return self.client.run(calls.list_characters(self._prefix, self.extension_id))

    def get_character(self, character_id: str) -> FullCharacter:
        """A character with all its instances and their data."""
        return self.client.run(calls.get_character(self._prefix, self.extension_id, character_id))

    def list_instances(self, character_id: str) -> list[Instance]:
        """A character's instances, oldest first (empty for an unknown character)."""
        return self.client.run(calls.list_instances(self._prefix, self.extension_id, character_id))

    def get_instance(self, instance_id: str) -> FullInstance:
        """An instance with its data."""
        return self.client.run(calls.get_instance(self._prefix, self.extension_id, instance_id))

    def get_data(self, instance_id: str) -> dict[str, JSON]:
        """All of an instance's data."""
        return self.client.run(calls.get_data(self._prefix, self.extension_id, instance_id))

    def get_data_key(self, instance_id: str, key: str) -> JSON:
        """The value under one key (``NotFound`` if missing)."""
        return self.client.run(
            calls.get_data_key(self._prefix, self.extension_id, instance_id, key)
        )


class Extension(CrossExtension):
    """Reads and writes for one registered extension."""

    _prefix = ""

    def register(self) -> None:
        """Register this extension (idempotent)."""
        self.client.register(self.extension_id)

    def upsert_character(self, character_id: str, name: str | None = None) -> Character:
        """Create or update a character; ``name=None`` keeps the stored name."""
        return self.client.run(calls.upsert_character(self.extension_id, character_id, name))

    def delete_character(self, character_id: str) -> None:
        """Delete a character with its instances and their data."""
        self.client.run(calls.delete_character(self.extension_id, character_id))

    def upsert_instance(
        self, instance_id: str, character_id: str, name: str | None = None
    ) -> Instance:
        """Create, update or move an instance; the character must exist."""
        return self.client.run(
            calls.upsert_instance(self.extension_id, instance_id, character_id, name)
        )

    def delete_instance(self, instance_id: str) -> None:
        """Delete an instance and its data."""
        self.client.run(calls.delete_instance(self.extension_id, instance_id))

    def delete_all_instances(self, character_id: str) -> int:
        """Delete all of a character's instances; return how many there were."""
        return self.client.run(calls.delete_all_instances(self.extension_id, character_id))

    def set_data_key(self, instance_id: str, key: str, value: JSON) -> None:
        """Store one value under one key."""
        self.client.run(calls.set_data_key(self.extension_id, instance_id, key, value))

    def delete_data_key(self, instance_id: str, key: str) -> None:
        """Delete one key (``NotFound`` if missing)."""
        self.client.run(calls.delete_data_key(self.extension_id, instance_id, key))

    def clear_data(self, instance_id: str) -> bool:
        """Delete all of an instance's data; ``False`` if there was none."""
        return self.client.run(calls.clear_data(self.extension_id, instance_id))

    def override_data(self, instance_id: str, data: dict[str, JSON]) -> None:
        """Replace all of an instance's data, atomically."""
        self.client.run(calls.override_data(self.extension_id, instance_id, data))

    def merge_data(self, instance_id: str, data: dict[str, JSON]) -> None:
        """Set each top-level key of ``data``, atomically."""
        self.client.run(calls.merge_data(self.extension_id, instance_id, data))

    def remove_data_keys(self, instance_id: str, keys: list[str]) -> int:
        """Delete the listed keys where present; return how many were deleted."""
        return self.client.run(calls.remove_data_keys(self.extension_id, instance_id, keys))
