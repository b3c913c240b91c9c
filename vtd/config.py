"""The daemon's settings: command-line flags, ``VTD_*`` variables, config file.

Each setting is resolved in one order: flag, then environment variable,
then the config file (TOML, the flags' names as keys), then default. Paths
follow the protocol: the socket from ``--socket``, ``VTD_SOCKET``, a socket
passed by systemd, ``$XDG_RUNTIME_DIR/vtd/vtd.sock`` or
``/tmp/vtd-$UID/vtd.sock``; the data dir from ``--data-dir``,
``VTD_DATA_DIR``, ``$STATE_DIRECTORY``, ``$XDG_DATA_HOME/vtd`` or
``~/.local/share/vtd``.
"""

from __future__ import annotations

import argparse
import os
import tomllib
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
    config_file: Path | None = None
    """The config file that was read, if any (SIGHUP reads it again)."""


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


def default_config_file(env: Mapping[str, str]) -> Path:
    """``$CONFIGURATION_DIRECTORY/vtd.toml`` under systemd, else the XDG config home's."""
    configuration = env.get("CONFIGURATION_DIRECTORY")
    if configuration:
        return Path(configuration.split(":")[0]) / "vtd.toml"
    config_home = env.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "vtd" / "vtd.toml"


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML config file, keyed by flag name (``data-dir``)."""
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    known = {setting.flag[2:] for dest, setting in _SETTINGS.items() if dest != "config_file"}
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{path}: unknown setting {key!r} (known: {', '.join(sorted(known))})"
            )
    return table


def _from_file(dest: str, setting: _Setting, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a string or a number")
    if dest == "socket_mode" and isinstance(value, int):
        if not 0 <= value <= 0o777:
            raise ValueError(f"{value:#o} is not a file mode between 0000 and 0777")
        return value
    return setting.parse(str(value))


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
    "config_file": _Setting(
        "--config",
        "VTD_CONFIG",
        Path,
        "TOML config file with the flags' names as keys "
        "(default: $CONFIGURATION_DIRECTORY/vtd.toml or ~/.config/vtd/vtd.toml, if present)",
        "FILE",
    ),
    "socket_path": _Setting(
        "--socket",
        "VTD_SOCKET",
        Path,
        "Unix socket to listen on (default: $XDG_RUNTIME_DIR/vtd/vtd.sock, "
        "else /tmp/vtd-$UID/vtd.sock)",
        "PATH",
    ),
    "data_dir": _Setting(
        "--data-dir",
        "VTD_DATA_DIR",
        Path,
        "where the databases live (default: $STATE_DIRECTORY under systemd, "
        "else $XDG_DATA_HOME/vtd or ~/.local/share/vtd)",
        "DIR",
    ),
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
            "Every flag can also be set by the environment variable shown in brackets, "
            "or in the config file: a flag wins over its variable, a variable over the "
            "file. `vtd install-units [--user]` writes systemd units for this vtd; "
            "see `vtd install-units --help`."
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
    """Resolve the configuration from ``argv``, ``env`` and the config file; exit 2 if bad."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return resolve(vars(args), env)
    except ConfigError as exc:
        parser.error(str(exc))


def resolve(flags: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """The configuration from parsed flags (``None`` when absent) and the environment."""
    values: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    for dest, setting in _SETTINGS.items():
        raw, source = flags.get(dest), setting.flag
        if raw is None and env.get(setting.env):
            raw, source = env[setting.env], setting.env
        if raw is not None:
            try:
                values[dest] = setting.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        if dest == "config_file":
            explicit = "config_file" in values
            path = values.get("config_file") or default_config_file(env)
            if explicit or path.is_file():
                values["config_file"] = path
                file_values = read_config_file(path)
    for dest, setting in _SETTINGS.items():
        key = setting.flag[2:]
        if dest not in values and key in file_values:
            try:
                values[dest] = _from_file(dest, setting, file_values[key])
            except ValueError as exc:
                raise ConfigError(f"{values['config_file']}: {key}: {exc}") from None
    if "socket_path" not in values and not systemd_passed_socket(env):
        values["socket_path"] = default_socket_path(env)
    values.setdefault("socket_path", None)
    values.setdefault("data_dir", default_data_dir(env))
    return Config(**values)
