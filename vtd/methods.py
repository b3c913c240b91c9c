"""Every protocol method, and the one place daemon errors become wire errors.

Each method is a params spec plus its handlers: a coroutine function, and
for the methods that can answer without waiting (point reads, ``ping``) a
plain function too. ``rpc_methods()`` wraps them for jsonrpcserver's two
dispatchers: the wrapper checks params, runs the handler, and maps
``vtd.errors`` exceptions to ``JsonRpcError`` with the protocol's codes and
data. Anything unexpected is logged in full and answered as -32603 with no
internals. This module knows nothing of sockets or framing.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from jsonrpcserver import Error, JsonRpcError, Result, Success

from vtd import __version__, params, rpc, store
from vtd.actor import PendingWrite
from vtd.codes import (
    BUSY,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    NOT_FOUND,
    NOT_REGISTERED,
    STORAGE_UNAVAILABLE,
)
from vtd.errors import (
    Busy,
    InvalidParam,
    MustWait,
    NotFound,
    NotRegistered,
    StorageUnavailable,
    VtdDaemonError,
)
from vtd.ordering import RequestOrder
from vtd.params import Param
from vtd.registry import Finish, Registry

log = logging.getLogger(__name__)

T = TypeVar("T")


# Not frozen, though never changed: one is made per write answered at its
# commit, and a frozen dataclass takes three times as long to make.
@dataclass(slots=True)
class Deferred:
    """The answer to a write handed to its writer at once: it comes when the write commits."""

    pending: PendingWrite[Any]
    answer: Callable[[Any], Any]
    """The method's result, from the job's value."""

    def result(self) -> Result:
        """The jsonrpcserver result, once ``pending`` is done."""
        try:
            return Success(self.answer(self.pending.outcome()))
        except Exception as exc:
            error = wire_error(exc, "a write")
        return Error(error.code, error.message, error.data)


@dataclass(slots=True)
class RequestContext:
    """What a method knows of its request: the registry, and its place in read order."""

    registry: Registry
    order: RequestOrder
    number: int
    deferred: Deferred | None = None
    """Set when an immediate method's answer comes later, when its write commits."""

    async def read(self, extension_id: str, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on the extension's reader, after this connection's earlier writes."""
        await self.order.turn(self.number)
        try:
            extension = self.registry.get(extension_id)
            earlier_write = self.order.last_write.get(extension_id)
        finally:
            self.order.release(self.number)
        if earlier_write is not None:
            await earlier_write.settled()
        return await extension.read(query)

    def read_now(self, extension_id: str, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` at once on this thread, or raise ``MustWait``.

        Only for a request whose turn has come: it must still wait if this
        connection's last write to the extension is not committed yet.
        """
        extension = self.registry.get(extension_id)
        earlier_write = self.order.last_write.get(extension_id)
        if earlier_write is not None and not earlier_write.done:
            raise MustWait
        return extension.read_now(query)

    async def write(self, extension_id: str, job: Callable[[sqlite3.Connection], T]) -> T:
        """Queue ``job`` on the extension's writer in read order; wait for its commit."""
        await self.order.turn(self.number)
        try:
            pending = await self.registry.get(extension_id).submit(job)
            self.order.last_write[extension_id] = pending
        finally:
            self.order.release(self.number)
        return await pending.result()

    def write_now(
        self, extension_id: str, job: Callable[[sqlite3.Connection], T]
    ) -> PendingWrite[T]:
        """Hand ``job`` to the extension's writer at once, or raise ``MustWait``.

        Only for a request whose turn has come.
        """
        pending = self.registry.get(extension_id).submit_now(job)
        self.order.last_write[extension_id] = pending
        return pending

    async def change_registration(self, change: Callable[[], Awaitable[Finish]]) -> None:
        """Apply a register or deregister in read order; wait until it is durable."""
        await self.order.turn(self.number)
        try:
            finish = await change()
        finally:
            self.order.release(self.number)
        await finish()


Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[Any]]
ImmediateHandler = Callable[[RequestContext, dict[str, Any]], Any]
Query = Callable[[sqlite3.Connection], Any]


@dataclass(frozen=True, slots=True)
class Method:
    """A protocol method: the params it takes and the handlers that answer it.

    ``now`` answers without waiting (or raises ``MustWait``, or leaves a
    ``Deferred`` answer in the context); ``handler`` answers from a task. A
    method has at least one of them; with only ``now``, it never waits.
    """

    params: tuple[Param, ...]
    handler: Handler | None = None
    now: ImmediateHandler | None = None


def _read(params: tuple[Param, ...], query: Callable[[dict[str, Any]], Query]) -> Method:
    """A read method, answered from the reader's thread."""

    async def handler(ctx: RequestContext, p: dict[str, Any]) -> Any:
        return await ctx.read(p["extensionId"], query(p))

    return Method(params, handler)


def _point_read(params: tuple[Param, ...], query: Callable[[dict[str, Any]], Query]) -> Method:
    """A read of one instance or less: answered at once when it need not wait."""

    def now(ctx: RequestContext, p: dict[str, Any]) -> Any:
        return ctx.read_now(p["extensionId"], query(p))

    return Method(params, _read(params, query).handler, now)


def _write(
    params: tuple[Param, ...],
    job: Callable[[dict[str, Any]], Query],
    answer: Callable[[dict[str, Any], Any], Any],
) -> Method:
    """A write method: ``job(p)`` runs in the writer; ``answer(p, its value)`` is the result.

    At once, the job is handed to the writer and the answer deferred until
    it commits; from a task, the task waits for the commit.
    """

    async def handler(ctx: RequestContext, p: dict[str, Any]) -> Any:
        return answer(p, await ctx.write(p["extensionId"], job(p)))

    def now(ctx: RequestContext, p: dict[str, Any]) -> Any:
        ctx.deferred = Deferred(ctx.write_now(p["extensionId"], job(p)), partial(answer, p))
        return rpc.PENDING

    return Method(params, handler, now)


def _success(p: dict[str, Any], value: Any) -> Any:
    return {"success": True}


EXTENSION = Param("extensionId", params.extension_id)
ID = Param("id", params.entity_id)
CHARACTER_ID = Param("characterId", params.entity_id)
NAME = Param("name", params.name, optional=True)
KEY = Param("key", params.key)


async def _register(ctx: RequestContext, p: dict[str, Any]) -> Any:
    extension_id = p["extensionId"]
    await ctx.change_registration(lambda: ctx.registry.register(extension_id))
    return {"success": True, "message": f"Extension {extension_id} registered successfully"}


async def _deregister(ctx: RequestContext, p: dict[str, Any]) -> Any:
    extension_id = p["extensionId"]
    await ctx.change_registration(lambda: ctx.registry.deregister(extension_id))
    return {"success": True, "message": f"Extension {extension_id} deregistered successfully"}


def _extensions_list(ctx: RequestContext, p: dict[str, Any]) -> Any:
    return [{"extensionId": extension_id} for extension_id in ctx.registry.ids()]


def _ping(ctx: RequestContext, p: dict[str, Any]) -> Any:
    message = p["message"]
    return {"message": "Pong!" if message is None else f"Pong! {message}"}


def _probe(ctx: RequestContext, p: dict[str, Any]) -> Any:
    return {"ok": True, "version": __version__}


def _key_value(conn: sqlite3.Connection, instance_id: str, key: str) -> Any:
    return {key: store.get_data_key(conn, instance_id, key)}


_READS: dict[str, Method] = {
    "characters.list": _read((EXTENSION,), lambda p: store.list_characters),
    "characters.get": _read(
        (EXTENSION, ID), lambda p: partial(store.get_character, character_id=p["id"])
    ),
    "instances.list": _read(
        (EXTENSION, CHARACTER_ID),
        lambda p: partial(store.list_instances, character_id=p["characterId"]),
    ),
    "instances.get": _point_read(
        (EXTENSION, ID), lambda p: partial(store.get_instance, instance_id=p["id"])
    ),
    "data.get": _point_read(
        (EXTENSION, ID), lambda p: partial(store.get_data, instance_id=p["id"])
    ),
    "data.getKey": _point_read(
        (EXTENSION, ID, KEY), lambda p: partial(_key_value, instance_id=p["id"], key=p["key"])
    ),
}

_WRITES: dict[str, Method] = {
    "characters.upsert": _write(
        (EXTENSION, ID, NAME),
        lambda p: partial(store.upsert_character, character_id=p["id"], name=p["name"]),
        lambda p, character: character,
    ),
    "characters.delete": _write(
        (EXTENSION, ID), lambda p: partial(store.delete_character, character_id=p["id"]), _success
    ),
    "instances.upsert": _write(
        (EXTENSION, ID, CHARACTER_ID, NAME),
        lambda p: partial(
            store.upsert_instance,
            instance_id=p["id"],
            character_id=p["characterId"],
            name=p["name"],
        ),
        lambda p, instance: instance,
    ),
    "instances.delete": _write(
        (EXTENSION, ID), lambda p: partial(store.delete_instance, instance_id=p["id"]), _success
    ),
    "instances.deleteAll": _write(
        (EXTENSION, CHARACTER_ID),
        lambda p: partial(store.delete_all_instances, character_id=p["characterId"]),
        lambda p, count: {"success": True, "deletedCount": count},
    ),
    "data.set": _write(
        (EXTENSION, ID, KEY, Param("value", params.value)),
        lambda p: partial(store.set_data_key, instance_id=p["id"], key=p["key"], value=p["value"]),
        # The value as the writer encoded it to store it: the event loop does
        # not encode it again (15 MiB took it tens of milliseconds).
        lambda p, stored: {"success": True, "key": p["key"], "value": stored},
    ),
    "data.deleteKey": _write(
        (EXTENSION, ID, KEY),
        lambda p: partial(store.delete_data_key, instance_id=p["id"], key=p["key"]),
        _success,
    ),
    "data.clear": _write(
        (EXTENSION, ID),
        lambda p: partial(store.clear_data, instance_id=p["id"]),
        lambda p, cleared: {"success": cleared},
    ),
    "data.override": _write(
        (EXTENSION, ID, Param("data", params.data_object)),
        lambda p: partial(store.override_data, instance_id=p["id"], values=p["data"]),
        lambda p, _: {"success": True, "message": "Instance data overridden successfully"},
    ),
    "data.merge": _write(
        (EXTENSION, ID, Param("data", params.data_object)),
        lambda p: partial(store.merge_data, instance_id=p["id"], values=p["data"]),
        lambda p, _: {"success": True, "message": "Instance data merged successfully"},
    ),
    "data.remove": _write(
        (EXTENSION, ID, Param("keys", params.key_list)),
        lambda p: partial(store.remove_data_keys, instance_id=p["id"], keys=p["keys"]),
        lambda p, count: {"success": True, "removedCount": count},
    ),
}

METHODS: dict[str, Method] = {
    "register": Method((EXTENSION,), _register),
    "deregister": Method((EXTENSION,), _deregister),
    "extensions.list": Method((), now=_extensions_list),
    "ping": Method((Param("message", params.text, optional=True),), now=_ping),
    "probe": Method((), now=_probe),
    **_READS,
    **_WRITES,
    **{f"cross.{name}": method for name, method in _READS.items()},
}
"""The protocol's methods by wire name; ``cross.*`` are the read methods again."""


def _naming_field(field: str, reason: str) -> str:
    """``reason`` with ``field`` in front, unless it names the field already."""
    if re.match(rf"{re.escape(field)}\b", reason):
        return reason
    return f"{field} {reason}"


def to_rpc_error(exc: VtdDaemonError) -> JsonRpcError:
    """The wire error for a daemon error: the protocol's code, one sentence, and data."""
    if isinstance(exc, InvalidParam):
        return JsonRpcError(
            INVALID_PARAMS,
            f"Invalid params: {_naming_field(exc.field, exc.reason)}",
            {"field": exc.field, "reason": exc.reason},
        )
    if isinstance(exc, NotRegistered):
        return JsonRpcError(
            NOT_REGISTERED,
            f"Extension {exc.extension_id} is not registered; call register first",
            {"extensionId": exc.extension_id},
        )
    if isinstance(exc, NotFound):
        data: dict[str, Any] = {"kind": exc.kind, "id": exc.id}
        where = ""
        if exc.instance_id is not None:
            data["instanceId"] = exc.instance_id
            where = f" in instance {exc.instance_id}"
        return JsonRpcError(NOT_FOUND, f"{exc.kind.capitalize()} {exc.id!r} not found{where}", data)
    if isinstance(exc, Busy):
        return JsonRpcError(BUSY, f"Server busy: {exc}; retry later")
    if isinstance(exc, StorageUnavailable):
        return JsonRpcError(
            STORAGE_UNAVAILABLE,
            f"Storage for extension {exc.extension_id} is unavailable: {exc.reason}",
            {"extensionId": exc.extension_id, "reason": exc.reason},
        )
    log.error("no wire error for %r; answering -32603", exc)
    return internal_error()


def wire_error(exc: Exception, what: str) -> JsonRpcError:
    """The wire error for what a method raised; anything unexpected is logged in full."""
    if isinstance(exc, VtdDaemonError):
        return to_rpc_error(exc)
    log.error("%s failed", what, exc_info=exc)
    return internal_error()


def internal_error() -> JsonRpcError:
    """The -32603 answer: the daemon logged the details; the client gets none of them."""
    return JsonRpcError(
        INTERNAL_ERROR, "Internal error; the daemon logged the details", {"reason": "internal"}
    )


def _rpc(name: str, method: Method) -> Callable[..., Awaitable[Result]]:
    handler, now = method.handler, method.now
    check_params = params.checker(method.params)

    async def call(ctx: RequestContext, /, **raw: Any) -> Result:
        try:
            values = check_params(raw)
            if handler is not None:
                return Success(await handler(ctx, values))
            assert now is not None, f"method {name} has no handler"
            return Success(now(ctx, values))
        except Exception as exc:
            raise wire_error(exc, f"method {name}") from None

    return call


def _rpc_now(name: str, now: ImmediateHandler, method: Method) -> Callable[..., Result]:
    check_params = params.checker(method.params)

    def call(ctx: RequestContext, /, **raw: Any) -> Result:
        try:
            values = check_params(raw)
            return Success(now(ctx, values))
        except MustWait:
            return Success(rpc.LATER)  # the caller answers it from a task instead
        except Exception as exc:
            raise wire_error(exc, f"method {name}") from None

    return call


def rpc_methods() -> rpc.MethodTables:
    """The methods to hand to jsonrpcserver's dispatchers."""
    return rpc.MethodTables(
        awaited={name: _rpc(name, method) for name, method in METHODS.items()},
        immediate={
            name: _rpc_now(name, method.now, method)
            for name, method in METHODS.items()
            if method.now is not None
        },
    )
