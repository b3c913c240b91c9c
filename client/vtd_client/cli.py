"""``vtctl``: the vtd command line.

Every subcommand maps to one protocol method and prints its result as JSON:
indented and coloured on a terminal, compact when piped. The exception is
``import-valuetracker``, which copies the old plugin's databases in through
many calls and prints what it imported, and ``backup``, which copies the
data dir's files without the daemon. Exit status: 0
success, 1 the daemon answered an error, 2 usage error, 3 daemon
unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from argparse import SUPPRESS
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from vtd_client import __version__
from vtd_client._errors import InvalidParams, RpcError, TransportError
from vtd_client._output import render
from vtd_client._sync import Client
from vtd_client.backup import BackupError, back_up, default_data_dir
from vtd_client.valuetracker import NotAValuetrackerDatabase, import_database

EXIT_DAEMON_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

Params = dict[str, Any]
Builder = Callable[[argparse.Namespace], tuple[str, Params]]
Runner = Callable[[Client, argparse.Namespace], Any]
"""A command that is more than one call: it makes its calls and answers what to print."""


class UsageError(Exception):
    """A command-line argument the daemon would never accept; exit status 2."""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise UsageError(
            f"{what} is not valid JSON: {text!r} (to store a string, quote it: '\"{text}\"')"
        ) from None


def _json_source(text: str, what: str) -> Any:
    """JSON given inline, as ``@file``, or as ``-`` for standard input."""
    if text == "-":
        return _json(sys.stdin.read(), what)
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as file:
                return _json(file.read(), what)
        except OSError as exc:
            raise UsageError(f"cannot read {text[1:]}: {exc.strerror}") from None
    return _json(text, what)


def _named(name: str | None) -> Params:
    return {} if name is None else {"name": name}


def _call_params(args: argparse.Namespace) -> tuple[str, Params]:
    params: Params = _json(args.params, "--params") if args.params else {}
    if not isinstance(params, dict):
        raise UsageError("--params must be a JSON object")
    for pair in args.pairs:
        if ":=" in pair:
            key, _, raw = pair.partition(":=")
            params[key] = _json(raw, key)
        elif "=" in pair:
            key, _, raw = pair.partition("=")
            params[key] = raw
        else:
            raise UsageError(f"{pair!r} is neither key=string nor key:=json")
    return args.method, params


def _data(args: argparse.Namespace) -> tuple[str, Params]:
    base = {"extensionId": args.ext, "id": args.instance}
    if args.action == "get":
        if args.key is None:
            return "data.get", base
        return "data.getKey", {**base, "key": args.key}
    if args.action == "set":
        return "data.set", {**base, "key": args.key, "value": _json(args.value, "VALUE")}
    if args.action == "del":
        return "data.deleteKey", {**base, "key": args.key}
    if args.action == "remove":
        return "data.remove", {**base, "keys": args.keys}
    if args.action == "clear":
        return "data.clear", base
    data = _json_source(args.source, "DATA")
    return f"data.{args.action}", {**base, "data": data}


def build_parser() -> argparse.ArgumentParser:
    """The ``vtctl`` command line and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="vtctl",
        description="Talk to the vtd daemon: read and write characters, instances and data.",
        epilog=(
            "Exit status: 0 success, 1 the daemon answered an error, 2 usage error, "
            "3 daemon unreachable. JSON values are strict: 123 is a number, '\"123\"' a string."
        ),
    )
    parser.add_argument("--version", action="version", version=f"vtctl {__version__}")
    _add_options(parser, after_command=False)
    options = argparse.ArgumentParser(add_help=False)
    _add_options(options, after_command=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help: str, build: Builder, parent: Any = commands, run: Runner | None = None
    ) -> Any:
        sub = parent.add_parser(name, help=help, description=help, parents=[options])
        sub.set_defaults(build=build, run=run, local=None)
        return sub

    ping = command(
        "ping",
        "check that the daemon answers",
        lambda a: ("ping", ({} if a.message is None else {"message": a.message})),
    )
    ping.add_argument("message", nargs="?")
    command("probe", "show the daemon's version", lambda a: ("probe", {}))

    ext = commands.add_parser("ext", help="list, register or deregister extensions")
    ext_commands = ext.add_subparsers(dest="action", required=True, metavar="ACTION")
    command("list", "registered extensions", lambda a: ("extensions.list", {}), ext_commands)
    for action in ("register", "deregister"):
        sub = command(
            action,
            f"{action} an extension",
            lambda a: (a.action, {"extensionId": a.ext}),
            ext_commands,
        )
        sub.add_argument("ext", metavar="EXT")

    chars = command(
        "chars",
        "list an extension's characters",
        lambda a: ("characters.list", {"extensionId": a.ext}),
    )
    chars.add_argument("ext", metavar="EXT")

    char = commands.add_parser("char", help="get, set or remove a character")
    char_commands = char.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = command(
        "get",
        "a character with its instances and data",
        lambda a: ("characters.get", {"extensionId": a.ext, "id": a.id}),
        char_commands,
    )
    put = command(
        "set",
        "create or update a character",
        lambda a: ("characters.upsert", {"extensionId": a.ext, "id": a.id, **_named(a.name)}),
        char_commands,
    )
    put.add_argument("--name")
    rm = command(
        "rm",
        "delete a character, its instances and data",
        lambda a: ("characters.delete", {"extensionId": a.ext, "id": a.id}),
        char_commands,
    )
    for sub in (get, put, rm):
        sub.add_argument("ext", metavar="EXT")
        sub.add_argument("id", metavar="ID")

    inst = commands.add_parser("inst", help="list, get, set or remove instances")
    inst_commands = inst.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command(
        "list",
        "a character's instances",
        lambda a: ("instances.list", {"extensionId": a.ext, "characterId": a.character}),
        inst_commands,
    )
    listing.add_argument("ext", metavar="EXT")
    listing.add_argument("character", metavar="CHARACTER")
    get = command(
        "get",
        "an instance with its data",
        lambda a: ("instances.get", {"extensionId": a.ext, "id": a.id}),
        inst_commands,
    )
    rm = command(
        "rm",
        "delete an instance and its data",
        lambda a: ("instances.delete", {"extensionId": a.ext, "id": a.id}),
        inst_commands,
    )
    for sub in (get, rm):
        sub.add_argument("ext", metavar="EXT")
        sub.add_argument("id", metavar="ID")
    put = command(
        "set",
        "create, update or move an instance",
        lambda a: (
            "instances.upsert",
            {"extensionId": a.ext, "id": a.id, "characterId": a.character, **_named(a.name)},
        ),
        inst_commands,
    )
    put.add_argument("ext", metavar="EXT")
    put.add_argument("id", metavar="ID")
    put.add_argument("character", metavar="CHARACTER")
    put.add_argument("--name")
    rm_all = command(
        "rm-all",
        "delete all of a character's instances",
        lambda a: ("instances.deleteAll", {"extensionId": a.ext, "characterId": a.character}),
        inst_commands,
    )
    rm_all.add_argument("ext", metavar="EXT")
    rm_all.add_argument("character", metavar="CHARACTER")

    data = commands.add_parser("data", help="read and write an instance's data")
    data_commands = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    subs = {
        "get": "all data, or one KEY's value",
        "set": "store a JSON VALUE under KEY",
        "del": "delete one KEY",
        "remove": "delete several KEYs where present",
        "clear": "delete all data",
        "merge": "set each top-level key of DATA (JSON, @file or - for stdin)",
        "override": "replace all data with DATA (JSON, @file or - for stdin)",
    }
    for action, help_text in subs.items():
        sub = command(action, help_text, _data, data_commands)
        sub.add_argument("ext", metavar="EXT")
        sub.add_argument("instance", metavar="INSTANCE")
        if action == "get":
            sub.add_argument("key", metavar="KEY", nargs="?")
        elif action in ("set", "del"):
            sub.add_argument("key", metavar="KEY")
            if action == "set":
                sub.add_argument("value", metavar="VALUE")
        elif action == "remove":
            sub.add_argument("keys", metavar="KEY", nargs="+")
        elif action in ("merge", "override"):
            sub.add_argument("source", metavar="DATA")

    call = command("call", "call any method: key=string, key:=json, or --params JSON", _call_params)
    call.add_argument("method", metavar="METHOD", help="e.g. cross.data.get")
    call.add_argument("pairs", metavar="PARAM", nargs="*")
    call.add_argument("--params", help="all params as one JSON object")

    imported = command(
        "import-valuetracker",
        "copy the old valuetracker plugin's databases (SillyTavern's db/<EXT>.db) into vtd",
        _importing,
        run=_import,
    )
    imported.epilog = (
        "Each FILE is read, never changed; its extension is registered and every "
        "character, instance and value written through the daemon. Running it again "
        "is safe: it upserts and merges. Prints what was imported and what was left "
        "out (instances whose character was gone, and their values)."
    )
    imported.add_argument(
        "files",
        metavar="FILE",
        nargs="+",
        type=Path,
        help="a database the plugin made, e.g. SillyTavern/db/tracker.db",
    )
    imported.add_argument(
        "--extension",
        metavar="EXT",
        help="the extension to import into (default: each FILE's name without .db); one FILE only",
    )

    backup = command(
        "backup",
        "copy every database of vtd's data dir into a new directory, while vtd runs",
        lambda a: ("", {}),
    )
    backup.set_defaults(local=_back_up)
    backup.epilog = (
        "Reads the data dir's files directly (the daemon need not run), never changes "
        "their data, and needs read access to them: run it as the daemon's user, or as root "
        "for the system service. Each database is one consistent snapshot, holding "
        "every write acknowledged before its copy began. To restore, stop vtd, put the "
        "backup in place of the data dir, and start vtd. Exit status 2 if the backup "
        "cannot be made, or if a database cannot be copied (the others are)."
    )
    backup.add_argument("destination", metavar="DEST", type=Path, help="a new or empty directory")
    backup.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the daemon's data dir (default: VTD_DATA_DIR, else $XDG_DATA_HOME/vtd or "
        "~/.local/share/vtd; /var/lib/vtd for the system service)",
    )
    return parser


def _back_up(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = args.data_dir or default_data_dir()
    try:
        written = back_up(data_dir, args.destination)
    except BackupError as exc:
        _fail(EXIT_USAGE, str(exc))
    return {"dataDir": str(data_dir), "backup": str(args.destination), "files": len(written)}


def _importing(args: argparse.Namespace) -> tuple[str, Params]:
    """Check the arguments of an import, which ``_import`` then runs as many calls."""
    if args.extension is not None and len(args.files) > 1:
        raise UsageError("--extension names one extension: give it one FILE")
    return "", {}


def _import(client: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    reports = []
    for path in args.files:
        try:
            report = import_database(client, path, args.extension)
        except NotAValuetrackerDatabase as exc:
            _fail(EXIT_USAGE, str(exc))
        except RpcError as exc:
            hint = "fix it and run the import again: what was written stays, and is written over"
            if (
                isinstance(exc, InvalidParams)
                and exc.field == "extensionId"
                and args.extension is None
            ):
                # The plugin took names vtd does not, and named the file after it.
                hint = (
                    "the plugin named this file after its extension; import it alone with "
                    "--extension NAME to choose a name vtd takes"
                )
            _fail(EXIT_DAEMON_ERROR, f"importing {path}: {describe(exc)} ({hint})")
        reports.append(report.as_json())
    return reports


def _fail(status: int, message: str) -> NoReturn:
    print(f"vtctl: {message}", file=sys.stderr)
    raise SystemExit(status)


def describe(exc: RpcError) -> str:
    """One line naming the error code and, where known, the field at fault."""
    detail = f"error {exc.code}: {exc.message}"
    if isinstance(exc, InvalidParams) and exc.field:
        detail += f" [field: {exc.field}]"
    return detail


def _add_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """The options every command takes, before it or after it (``vtctl ping --compact``).

    After the command they override the ones before it, and are not set
    when absent, so they change nothing then.
    """

    def default(value: Any) -> Any:
        return SUPPRESS if after_command else value

    parser.add_argument(
        "--socket",
        default=default(None),
        help="daemon socket (default: VTD_SOCKET, then the runtime dir)",
    )
    parser.add_argument(
        "--timeout", type=float, default=default(30.0), help="seconds per call (30)"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--pretty",
        action="store_true",
        default=default(False),
        help="indent output even when piped",
    )
    output.add_argument(
        "--compact", action="store_true", default=default(False), help="one line of output"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run one ``vtctl`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        method, params = args.build(args)
    except UsageError as exc:
        parser.error(str(exc))
    interactive = sys.stdout.isatty()
    pretty = args.pretty or (interactive and not args.compact)
    color = interactive and pretty and not os.environ.get("NO_COLOR")
    if args.local is not None:  # works on files, not through the daemon
        print(render(args.local(args), pretty=pretty, color=color))
        return
    try:
        with Client(args.socket, timeout=args.timeout) as client:
            if args.run is not None:
                result: Any = args.run(client, args)
            else:
                result = client.call(method, **params)
    except RpcError as exc:
        _fail(EXIT_DAEMON_ERROR, describe(exc))
    except TransportError as exc:
        _fail(EXIT_UNREACHABLE, str(exc))
    print(render(result, pretty=pretty, color=color))
