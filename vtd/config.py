"""The daemon's settings: command-line flags, ``VTD_*`` variables, defaults.

Each setting is resolved in one order: flag, then environment variable,
then default. Paths follow the protocol: the socket from ``--socket``,
``VTD_SOCKET``, a socket passed by systemd, ``$XDG_RUNTIME_DIR/vtd/vtd.sock``
or ``/tmp/vtd-$UID/vtd.sock``; the data dir from ``--data-dir``,
``VTD_DATA_DIR``, ``$STATE_DIRECTORY``, ``$XDG_DATA_HOME/vtd`` or
``~/.local/share/vtd``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from vtd import __version__

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the daemon needs to start, resolved and checked."""

    socket_path: Path | None
    """Where to listen, or ``None`` to use the socket systemd passed in."""
    data_dir: Path
    socket_mode: int = 0o600
    max_message: int = 16 * 1024 * 1024
    max_connections: int = 1024
    max_in_flight: int = 128
    line_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    log_level: str = "info"


class ConfigError(Exception):
    """A setting has a value the daemon cannot use; the message is one line for stderr."""


def default_socket_path(env: Mapping[str, str]) -> Path:
    """The socket path when nothing names one: the runtime dir, else ``/tmp/vtd-$UID``."""
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "vtd" / "vtd.sock"
    return Path(f"/tmp/vtd-{os.getuid()}") / "vtd.sock"


def default_data_dir(env: Mapping[str, str]) -> Path:
    """The data dir when nothing names one: systemd's, else the XDG data home."""
    state = env.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    data_home = env.get("XDG_DATA_HOME")
    if data_home:
        return Path(data_home) / "vtd"
    return Path.home() / ".local" / "share" / "vtd"


def systemd_passed_socket(env: Mapping[str, str]) -> bool:
    """Whether systemd passed this process a listening socket (``LISTEN_PID``/``LISTEN_FDS``)."""
    return env.get("LISTEN_PID") == str(os.getpid()) and env.get("LISTEN_FDS", "0") not in (
        "",
        "0",
    )


def octal_mode(text: str) -> int:
    """A file mode written in octal, such as ``0600`` or ``660``."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal file mode such as 0600") from None
    if not 0 <= mode <= 0o777:
        raise ValueError(f"{text!r} is not a file mode between 0000 and 0777")
    return mode


def positive_int(text: str) -> int:
    """A whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise ValueError(f"{text!r} must be above zero")
    return value


def positive_seconds(text: str) -> float:
    """A number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"{text!r} must be a number of seconds above zero")
    return value


def log_level(text: str) -> str:
    """One of the log levels, in any case."""
    if text.lower() not in LOG_LEVELS:
        raise ValueError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.lower()


@dataclass(frozen=True, slots=True)
class _Setting:
    flag: str
    env: str
    parse: Callable[[str], Any]
    help: str
    metavar: str


_SETTINGS = {
    "socket_path": _Setting("--socket", "VTD_SOCKET", Path, "Unix socket to listen on", "PATH"),
    "data_dir": _Setting("--data-dir", "VTD_DATA_DIR", Path, "where the databases live", "DIR"),
    "socket_mode": _Setting(
        "--socket-mode", "VTD_SOCKET_MODE", octal_mode, "socket file mode, octal (0600)", "MODE"
    ),
    "max_message": _Setting(
        "--max-message",
        "VTD_MAX_MESSAGE",
        positive_int,
        "largest message in bytes (16 MiB)",
        "BYTES",
    ),
    "max_connections": _Setting(
        "--max-connections", "VTD_MAX_CONNECTIONS", positive_int, "open connections (1024)", "N"
    ),
    "line_timeout": _Setting(
        "--line-timeout",
        "VTD_LINE_TIMEOUT",
        positive_seconds,
        "seconds a started message may take to arrive (30)",
        "SECONDS",
    ),
    "log_level": _Setting(
        "--log-level",
        "VTD_LOG_LEVEL",
        log_level,
        "debug, info, warning or error (info)",
        "LEVEL",
    ),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``vtd`` command line."""
    parser = _Parser(
        prog="vtd",
        description=(
            "vtd stores the values chat extensions track and serves them as JSON-RPC 2.0 "
            "over a Unix socket. Run it with no arguments to start on the default socket "
            "and data dir; stop it with SIGTERM or Ctrl-C."
        ),
        epilog=(
            "Every flag can also be set by the environment variable shown in brackets; "
            "a flag wins over its variable."
        ),
    )
    parser.add_argument("--version", action="version", version=f"vtd {__version__}")
    for dest, setting in _SETTINGS.items():
        parser.add_argument(
            setting.flag,
            dest=dest,
            metavar=setting.metavar,
            default=None,
            help=f"{setting.help} [{setting.env}]",
        )
    return parser


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Resolve the configuration from ``argv`` and ``env``; exit 2 on a usage error."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for dest, setting in _SETTINGS.items():
        raw = getattr(args, dest)
        source = setting.flag
        if raw is None and env.get(setting.env):
            raw, source = env[setting.env], setting.env
        if raw is None:
            continue
        try:
            values[dest] = setting.parse(raw)
        except ValueError as exc:
            parser.error(f"{source}: {exc}")
    if "socket_path" not in values and not systemd_passed_socket(env):
        values["socket_path"] = default_socket_path(env)
    values.setdefault("socket_path", None)
    values.setdefault("data_dir", default_data_dir(env))
    return Config(**values)
