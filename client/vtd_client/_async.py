"""The async client: many concurrent calls share one connection, matched by id.

One reader task per connection delivers each answer to the call waiting for
its id. Writes go out under a lock, one line at a time. Use it as
``async with AsyncClient() as client:``; the reader task lives in the task
group that ``async with`` opens.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypeVar

import anyio
from anyio.abc import SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from vtd_client import _calls as calls
from vtd_client._calls import Call
from vtd_client._errors import (
    CallTimeout,
    ConnectionLost,
    DaemonUnavailable,
    TransportError,
    VtdError,
    error_from_response,
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

MAX_LINE = 1 << 30


class _Reply:
    """A one-shot slot for the answer to one request (or one batch)."""

    __slots__ = ("error", "event", "response")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.response: Any = None
        self.error: VtdError | None = None

    def deliver(self, response: Any = None, error: VtdError | None = None) -> None:
        self.response, self.error = response, error
        self.event.set()


class _Connection:
    """One open socket and the calls waiting on it."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self.waiting: dict[Any, _Reply] = {}
        self.send_lock = anyio.Lock()
        self.closed = False
        """No more calls go out on it: it dropped, or a send was cut short."""
        self.line_error: VtdError | None = None
        self._reading = anyio.CancelScope()

    def retire(self) -> None:
        """Send nothing more on it; close it once no call waits on it any more.

        For a send cut short (its caller cancelled, or timed out): part of the
        line may have gone out, and the daemon would read the next line sent
        as its end. The reader closes the connection after the last answer; a
        call that gives up on its answer calls this again, and closes it if
        it was the last.
        """
        self.closed = True
        if not self.waiting:
            self._reading.cancel()

    async def read_answers(self) -> None:
        reason = "vtd closed the connection"
        try:
            with self._reading:
                while not (self.closed and not self.waiting):
                    line = await self.reader.receive_until(b"\n", MAX_LINE)
                    response = json.loads(line)
                    ids = response_ids(response)
                    if ids == [None] and isinstance(response, dict) and "error" in response:
                        # An answer to no request in particular (a refused connection,
                        # an oversized line): the daemon closes next, and waiting
                        # calls get it.
                        self.line_error = error_from_response(response["error"])
                    reply = next((self.waiting.pop(i) for i in ids if i in self.waiting), None)
                    for i in ids:
                        self.waiting.pop(i, None)
                    if reply is not None:
                        reply.deliver(response)
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
            ValueError,
        ) as exc:
            reason = f"the connection to vtd dropped ({type(exc).__name__})"
        finally:
            self.closed = True
            error = self.line_error or ConnectionLost(reason)
            for reply in set(self.waiting.values()):
                reply.deliver(error=error)
            self.waiting.clear()
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()


class AsyncClient:
    """An async vtd client for anyio or asyncio programs.

    Same settings and methods as ``Client``, awaited. Calls may run
    concurrently from many tasks over the one connection. The connection
    reopens on the next call after it drops; calls in flight then raise
    ``ConnectionLost`` and are never resent. A call cancelled (or timed
    out) while sending retires the connection: the calls already sent on it
    get their answers, and later calls open a new one.
    """

    def __init__(
        self, socket: str | os.PathLike[str] | None = None, *, timeout: float | None = 30.0
    ) -> None:
        self.socket_path = socket_path(socket)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._connection: _Connection | None = None
        self._connect_lock = anyio.Lock()
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> AsyncClient:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        await self.aclose()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(kind, exc, tb)
        finally:
            self._tg = None

    async def aclose(self) -> None:
        """Close the connection (a later call opens a new one)."""
        if self._connection is not None:
            await self._connection.stream.aclose()
            self._connection = None

    async def call(self, method: str, /, **params: Any) -> Any:
        """Call any method by its wire name; return its result or raise its error."""
        request_id = next(self._ids)
        response = await self._exchange(request(method, params, request_id), [request_id])
        return result_of(response)

    async def batch(
        self, requests: Iterable[Request], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Send ``(method, params)`` pairs as one batch; results in the same order."""
        pairs = list(requests)
        if not pairs:
            return []
        first = next(self._ids)
        sent = batch_requests(pairs, first)
        self._ids = itertools.count(first + len(pairs))
        responses = await self._exchange(sent, [item["id"] for item in sent])
        return batch_results(sent, responses, return_exceptions=return_exceptions)

    async def run(self, call: Call[T]) -> T:
        """Make a prepared ``Call`` and convert its result."""
        return call.convert(await self.call(call.method, **call.params))

    async def register(self, extension_id: str) -> None:
        """Register an extension (idempotent; its data comes back if it existed)."""
        await self.run(calls.register(extension_id))

    async def deregister(self, extension_id: str) -> None:
        """Deregister an extension; its data stays on disk."""
        await self.run(calls.deregister(extension_id))

    async def list_extensions(self) -> list[str]:
        """Registered extension ids, sorted."""
        return await self.run(calls.list_extensions())

    async def ping(self, message: str | None = None) -> str:
        """``"Pong!"``, with ``message`` after it if given."""
        return await self.run(calls.ping(message))

    async def probe(self) -> str:
        """The daemon's version."""
        return await self.run(calls.probe())

    def extension(self, extension_id: str) -> AsyncExtension:
        """A handle for one extension's reads and writes."""
        return AsyncExtension(self, extension_id)

    def cross(self, extension_id: str) -> AsyncCrossExtension:
        """A read-only handle on another extension's data (the ``cross.*`` methods)."""
        return AsyncCrossExtension(self, extension_id)

    async def _exchange(self, message: Any, ids: list[int]) -> Any:
        connection = await self._connect()
        reply = _Reply()
        for request_id in ids:
            connection.waiting[request_id] = reply
        try:
            with anyio.fail_after(self.timeout):
                try:
                    async with connection.send_lock:
                        try:
                            await connection.stream.send(encode(message))
                        except BaseException:
                            # Part of the line may have gone out: nothing more
                            # goes on this connection (retired below).
                            connection.closed = True
                            raise
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    raise ConnectionLost(f"the connection to vtd dropped: {exc!r}") from exc
                await reply.event.wait()
        except TimeoutError:
            raise CallTimeout(f"vtd did not answer within {self.timeout} s") from None
        finally:
            for request_id in ids:
                connection.waiting.pop(request_id, None)
            if connection.closed:
                connection.retire()  # closes it now if no call waits on it any more
        if reply.error is not None:
            raise reply.error
        return reply.response

    async def _connect(self) -> _Connection:
        if self._tg is None:
            raise TransportError("use AsyncClient as `async with AsyncClient() as client:`")
        async with self._connect_lock:
            if self._connection is None or self._connection.closed:
                refuse_foreign_fallback(self.socket_path)
                try:
                    stream = await anyio.connect_unix(self.socket_path)
                except OSError as exc:
                    raise DaemonUnavailable.from_os_error(str(self.socket_path), exc) from exc
                self._connection = _Connection(stream)
                self._tg.start_soon(self._connection.read_answers)
            return self._connection


class AsyncCrossExtension:
    """Read-only async access to one extension's data."""

    _prefix = "cross."

    def __init__(self, client: AsyncClient, extension_id: str) -> None:
        self.client = client
        self.extension_id = extension_id

    async def list_characters(self) -> list[Character]:
        """Every character, oldest first."""
        return await self.client.run(calls.list_characters(self._prefix, self.extension_id))

    async def get_character(self, character_id: str) -> FullCharacter:
        """A character with all its instances and their data."""
        return await self.client.run(
            calls.get_character(self._prefix, self.extension_id, character_id)
        )

    async def list_instances(self, character_id: str) -> list[Instance]:
        """A character's instances, oldest first (empty for an unknown character)."""
        return await self.client.run(
            calls.list_instances(self._prefix, self.extension_id, character_id)
        )

    async def get_instance(self, instance_id: str) -> FullInstance:
        """An instance with its data."""
        return await self.client.run(
            calls.get_instance(self._prefix, self.extension_id, instance_id)
        )

    async def get_data(self, instance_id: str) -> dict[str, JSON]:
        """All of an instance's data."""
        return await self.client.run(calls.get_data(self._prefix, self.extension_id, instance_id))

    async def get_data_key(self, instance_id: str, key: str) -> JSON:
        """The value under one key (``NotFound`` if missing)."""
        return await self.client.run(
            calls.get_data_key(self._prefix, self.extension_id, instance_id, key)
        )


class AsyncExtension(AsyncCrossExtension):
    """Async reads and writes for one registered extension."""

    _prefix = ""

    async def register(self) -> None:
        """Register this extension (idempotent)."""
        await self.client.register(self.extension_id)

    async def upsert_character(self, character_id: str, name: str | None = None) -> Character:
        """Create or update a character; ``name=None`` keeps the stored name."""
        return await self.client.run(calls.upsert_character(self.extension_id, character_id, name))

    async def delete_character(self, character_id: str) -> None:
        """Delete a character with its instances and their data."""
        await self.client.run(calls.delete_character(self.extension_id, character_id))

    async def upsert_instance(
        self, instance_id: str, character_id: str, name: str | None = None
    ) -> Instance:
        """Create, update or move an instance; the character must exist."""
        return await self.client.run(
            calls.upsert_instance(self.extension_id, instance_id, character_id, name)
        )

    async def delete_instance(self, instance_id: str) -> None:
        """Delete an instance and its data."""
        await self.client.run(calls.delete_instance(self.extension_id, instance_id))

    async def delete_all_instances(self, character_id: str) -> int:
        """Delete all of a character's instances; return how many there were."""
        return await self.client.run(calls.delete_all_instances(self.extension_id, character_id))

    async def set_data_key(self, instance_id: str, key: str, value: JSON) -> None:
        """Store one value under one key."""
        await self.client.run(calls.set_data_key(self.extension_id, instance_id, key, value))

    async def delete_data_key(self, instance_id: str, key: str) -> None:
        """Delete one key (``NotFound`` if missing)."""
        await self.client.run(calls.delete_data_key(self.extension_id, instance_id, key))

    async def clear_data(self, instance_id: str) -> bool:
        """Delete all of an instance's data; ``False`` if there was none."""
        return await self.client.run(calls.clear_data(self.extension_id, instance_id))

    async def override_data(self, instance_id: str, data: dict[str, JSON]) -> None:
        """Replace all of an instance's data, atomically."""
        await self.client.run(calls.override_data(self.extension_id, instance_id, data))

    async def merge_data(self, instance_id: str, data: dict[str, JSON]) -> None:
        """Set each top-level key of ``data``, atomically."""
        await self.client.run(calls.merge_data(self.extension_id, instance_id, data))

    async def remove_data_keys(self, instance_id: str, keys: list[str]) -> int:
        """Delete the listed keys where present; return how many were deleted."""
        return await self.client.run(calls.remove_data_keys(self.extension_id, instance_id, keys))
