"""The systemd units for vtd, and ``vtd install-units`` to write them.

This module is the one source of the unit files: ``systemd/`` in the
repository holds them as rendered for ``/usr/local/bin/vtd`` (a test keeps
the two identical), and ``vtd install-units`` renders them for the ``vtd``
that runs it.

Two flavours share one socket unit. The system service runs as a dynamic
user with a tight sandbox; the user service keeps to the settings a user
manager can apply without privileges, and keeps its data where a vtd
started by hand does (``~/.local/share/vtd``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

SOCKET = """\
[Unit]
Description=vtd socket: the values store for chat extensions
Documentation=man:systemd.socket(5)

[Socket]
ListenStream=%t/vtd/vtd.sock
# Who may connect: the file mode is the access control. For a system
# service shared by a group, add a drop-in (systemctl edit vtd.socket) with
# SocketGroup=<group> and SocketMode=0660.
SocketMode=0600
# The directory only lets clients reach the socket; its mode above decides.
DirectoryMode=0755
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""

_SERVICE_HEAD = """\
[Unit]
Description=vtd: the values store for chat extensions
Documentation=man:systemd.service(5)
Requires=vtd.socket
After=vtd.socket

[Service]
Type=notify
ExecStart={exec_start}
# The shell's own kill: minimal images have no /bin/kill (Debian's procps).
ExecReload=/bin/sh -c 'kill -HUP $MAINPID'
Restart=on-failure
RestartSec=1s
WatchdogSec=30s
TimeoutStopSec=30s
LimitNOFILE=65536
UMask=0077
"""

_COMMON_HARDENING = """\
NoNewPrivileges=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
"""

SYSTEM_SERVICE = (
    _SERVICE_HEAD
    + """\
DynamicUser=yes
StateDirectory=vtd
StateDirectoryMode=0700
ConfigurationDirectory=vtd
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=yes
PrivateMounts=yes
PrivateUsers=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
DevicePolicy=closed
IPAddressDeny=any
RemoveIPC=yes
"""
    + _COMMON_HARDENING
    + """
[Install]
Also=vtd.socket
WantedBy=multi-user.target
"""
)

# No capability settings here: a user manager may not drop from the bounding
# set, and a service that asks it to fails at start with 218/CAPABILITIES.
USER_SERVICE = (
    _SERVICE_HEAD
    + _COMMON_HARDENING
    + """
[Install]
Also=vtd.socket
WantedBy=default.target
"""
)

DEFAULT_EXEC = "/usr/local/bin/vtd"


def render(*, user: bool, exec_start: str = DEFAULT_EXEC) -> dict[str, str]:
    """The unit files by name: ``vtd.socket`` and ``vtd.service`` of one flavour."""
    service = USER_SERVICE if user else SYSTEM_SERVICE
    return {"vtd.socket": SOCKET, "vtd.service": service.format(exec_start=exec_start)}


def installed_vtd() -> str:
    """The absolute path of the ``vtd`` command that is running, for ``ExecStart=``."""
    candidate = Path(sys.argv[0])
    if candidate.name == "vtd" and candidate.exists():
        return str(candidate.resolve())
    found = shutil.which("vtd")
    if found:
        return str(Path(found).resolve())
    return f"{Path(sys.executable).resolve()} -m vtd"


HIDDEN_FROM_SYSTEM_SERVICE = (Path("/home"), Path("/root"), Path("/run/user"))
"""What the system unit's ``ProtectHome=yes`` hides from the service."""


def hidden_from_system_service(exec_start: str, *, this_vtd: bool) -> Path | None:
    """A file the system service would need but could not see, if there is one.

    That is the command ``exec_start`` names, and, if it is ``this_vtd``
    (the one running), its package (an editable install leaves it in the
    checkout) and the interpreter behind its virtualenv.
    """
    needed = [Path(exec_start.split()[0])]
    if this_vtd:
        needed += [Path(__file__), Path(sys.executable)]
    for path in needed:
        resolved = path.resolve()
        if any(resolved.is_relative_to(hidden) for hidden in HIDDEN_FROM_SYSTEM_SERVICE):
            return resolved
    return None


def main(argv: Sequence[str]) -> None:
    """``vtd install-units``: write the units, and say how to enable them."""
    parser = argparse.ArgumentParser(
        prog="vtd install-units",
        description="Write vtd.socket and vtd.service for this vtd, then show how to start them.",
    )
    parser.add_argument(
        "--user", action="store_true", help="per-user units (default: system units)"
    )
    parser.add_argument(
        "--dest",
        type=Path,
        help="directory to write to (default: ~/.config/systemd/user with --user, "
        "else /etc/systemd/system)",
    )
    parser.add_argument("--exec", dest="exec_start", help="ExecStart= command (default: this vtd)")
    args = parser.parse_args(argv)
    if args.dest is None:
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        args.dest = (
            Path(config_home) / "systemd" / "user" if args.user else Path("/etc/systemd/system")
        )
    exec_start = args.exec_start or installed_vtd()
    hidden = (
        None
        if args.user
        else hidden_from_system_service(exec_start, this_vtd=args.exec_start is None)
    )
    if hidden is not None:
        parser.exit(
            1,
            f"vtd install-units: the system service could not run {hidden}: its "
            "ProtectHome=yes hides /home, /root and /run/user. Install vtd, and the "
            "Python it runs on, outside them, for example:\n"
            "  sudo /usr/bin/python3 -m venv /opt/vtd\n"
            "  sudo /opt/vtd/bin/pip install ./client .\n"
            "  sudo /opt/vtd/bin/vtd install-units\n"
            "or run vtd as your user: vtd install-units --user\n",
        )
    try:
        args.dest.mkdir(parents=True, exist_ok=True)
        for name, text in render(user=args.user, exec_start=exec_start).items():
            (args.dest / name).write_text(text)
            sys.stdout.write(f"wrote {args.dest / name}\n")
    except OSError as exc:
        parser.exit(1, f"vtd install-units: cannot write to {args.dest}: {exc.strerror}\n")
    manager = "systemctl --user" if args.user else "systemctl"
    sys.stdout.write(
        f"ExecStart={exec_start}\n"
        f"next: {manager} daemon-reload && {manager} enable --now vtd.socket\n"
    )
