"""The units under a live systemd: Debian booted in a container, driven as the README says.

The other systemd tests speak systemd's protocols to the daemon directly;
these boot a real service manager (systemd-nspawn into a minimal Debian
made with debootstrap) and follow the README's install steps for the
system and the user service. They need root, systemd-nspawn and
debootstrap, and the network for Debian's and PyPI's packages, so the plain
test command leaves them out: ``scripts/systemd-live`` runs them, and CI
runs that. Where no container can be built or booted, they skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wire import wait_until

pytestmark = [
    pytest.mark.live_systemd,
    pytest.mark.timeout(1800),  # a first run downloads Debian
    pytest.mark.skipif(os.geteuid() != 0, reason="booting a container needs root"),
    pytest.mark.skipif(
        shutil.which("systemd-nspawn") is None or shutil.which("debootstrap") is None,
        reason="needs systemd-nspawn and debootstrap (Debian: systemd-container, debootstrap)",
    ),
]

REPO = Path(__file__).parent.parent
ROOTFS = Path(os.environ.get("VTD_LIVE_ROOTFS", "/var/tmp/vtd-live-rootfs"))
PACKAGES = "systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,python3,python3-venv"
USER = "alice"
USER_ENV = "XDG_RUNTIME_DIR=/run/user/1000"
SYSTEM_SOCKET = "/run/vtd/vtd.sock"
CHECKOUT = f"/home/{USER}/vtd"
README_INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e ./client -e '.[test]'"
SYSTEM_INSTALL = "/usr/bin/python3 -m venv /opt/vtd && /opt/vtd/bin/pip install -q ./client ."
# Host files that let pip inside the container reach PyPI the way the host does.
HOST_FILES = ("/etc/resolv.conf", "/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf")


class Container:
    """A booted Debian with systemd as its PID 1; commands run inside with nsenter."""

    def __init__(self, rootfs: Path, log: Path) -> None:
        self._log = open(log, "wb")  # noqa: SIM115
        self._nspawn = subprocess.Popen(
            [
                *("systemd-nspawn", "-D", str(rootfs), "-b", "-M", "vtdlive"),
                *("--register=no", "--keep-unit", "--console=passive"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.init_pid = 0
        try:
            wait_until(self._found_init, timeout=30, message="the container's init")
            wait_until(self._booted, timeout=120, message="the container to finish booting")
        except BaseException:
            self.stop()
            raise

    def _found_init(self) -> bool:
        if self._nspawn.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self._nspawn.returncode}")
        # nspawn's first child is nspawn itself, setting up; then systemd replaces it.
        children = Path(f"/proc/{self._nspawn.pid}/task/{self._nspawn.pid}/children")
        for pid in children.read_text().split():
            if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                self.init_pid = int(pid)
        return self.init_pid != 0

    def _booted(self) -> bool:
        state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
        return state in ("running", "degraded")

    def run(
        self, *command: str, user: bool = False, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the container, as root or as the user with a user manager."""
        prefix = ["runuser", "-u", USER, "--", "env", USER_ENV] if user else []
        result = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a", *prefix, *command],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{command} exited {result.returncode}: {result.stderr}")
        return result

    def start(self, *command: str) -> subprocess.Popen[bytes]:
        """Start ``command`` in the container as root, without waiting for it."""
        return subprocess.Popen(
            ["nsenter", "-t", str(self.init_pid), "-a", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def show(self, unit: str, prop: str, *, user: bool = False) -> str:
        scope = ["--user"] if user else []
        return self.run(
            "systemctl", *scope, "show", "-p", prop, "--value", unit, user=user
        ).stdout.strip()

    def stop(self) -> None:
        if self.init_pid:
            self.run("systemctl", "poweroff", check=False)
        else:
            self._nspawn.terminate()
        try:
            self._nspawn.wait(60)
        except subprocess.TimeoutExpired:
            self._nspawn.kill()
            self._nspawn.wait()
        self._log.close()


def _chroot(*command: str) -> None:
    subprocess.run(["chroot", str(ROOTFS), *command], check=True, timeout=900)


def _prepare_rootfs() -> None:
    """A minimal Debian with systemd, this checkout installed as the README says, no vtd state."""
    if not (ROOTFS / "usr/bin/systemctl").exists():
        built = subprocess.run(
            [
                *("debootstrap", "--variant=minbase", f"--include={PACKAGES}"),
                *("bookworm", str(ROOTFS), "http://deb.debian.org/debian"),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if built.returncode != 0:  # no mirror, no space: this machine cannot, not vtd
            shutil.rmtree(ROOTFS, ignore_errors=True)
            last = (built.stderr or built.stdout).strip().splitlines()[-1:]
            pytest.skip(f"cannot build a Debian rootfs here (debootstrap: {last})")
    for name in HOST_FILES:
        if Path(name).exists():
            shutil.copy(name, ROOTFS / name.lstrip("/"))
    if not (ROOTFS / f"home/{USER}").exists():
        _chroot("useradd", "-m", USER)
    checkout = ROOTFS / CHECKOUT.lstrip("/")
    shutil.rmtree(checkout, ignore_errors=True)
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        target = checkout / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name.decode(), target)
    _chroot("chown", "-R", f"{USER}:{USER}", CHECKOUT)
    # The user's install: the README's first command, in the user's checkout.
    _chroot(
        *("runuser", "-u", USER, "--", "env", f"HOME=/home/{USER}"),
        *("sh", "-c", f"cd {CHECKOUT} && {README_INSTALL}"),
    )
    # The system service's install: the README's systemd section.
    shutil.rmtree(ROOTFS / "opt/vtd", ignore_errors=True)
    _chroot("sh", "-c", f"cd {CHECKOUT} && {SYSTEM_INSTALL}")
    _chroot("ln", "-sf", "/opt/vtd/bin/vtctl", "/usr/local/bin/vtctl")
    linger = ROOTFS / "var/lib/systemd/linger"
    linger.mkdir(parents=True, exist_ok=True)
    (linger / USER).touch()  # the user manager starts at boot, as `loginctl enable-linger`
    for leftover in (
        "etc/systemd/system/vtd.socket",
        "etc/systemd/system/vtd.service",
        "etc/systemd/system/sockets.target.wants/vtd.socket",
        "etc/systemd/system/vtd.socket.d",
        "etc/systemd/system/vtd.service.d",
        "etc/vtd",
        "opt/venv",
        "var/lib/private/vtd",
        f"home/{USER}/.config/systemd/user",
        f"home/{USER}/.local/share/vtd",
    ):
        path = ROOTFS / leftover
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    _prepare_rootfs()
    console = tmp_path_factory.mktemp("nspawn") / "console.log"
    try:
        booted = Container(ROOTFS, console)
    except AssertionError as exc:  # the boot involves nothing of vtd's
        tail = console.read_text(errors="replace").strip().splitlines()[-3:]
        pytest.skip(f"cannot boot a container here: {exc}; console: {tail}")
    try:
        yield booted
    finally:
        booted.stop()


def _vtctl(container: Container, *args: str, user: bool = False) -> object:
    command = [f"{CHECKOUT}/.venv/bin/vtctl"] if user else ["vtctl", "--socket", SYSTEM_SOCKET]
    out = container.run(*command, "--compact", *args, user=user).stdout
    return json.loads(out)


def _restarted_after_sigkill(container: Container, *, user: bool) -> None:
    scope = ["--user"] if user else []
    before = container.show("vtd.service", "MainPID", user=user)
    container.run("systemctl", *scope, "kill", "-s", "SIGKILL", "vtd.service", user=user)
    wait_until(
        lambda: (
            container.show("vtd.service", "MainPID", user=user) not in ("0", before)
            and container.show("vtd.service", "ActiveState", user=user) == "active"
        ),
        timeout=30,
        message="the service to be restarted",
    )
    assert container.show("vtd.service", "NRestarts", user=user) == "1"


def _restarted_by_the_watchdog_when_a_commit_hangs(container: Container) -> None:
    # Another process holds the database's write lock, as a hung disk would
    # hold a commit: vtd stops its watchdog pings and systemd restarts it.
    container.run("mkdir", "-p", "/etc/systemd/system/vtd.service.d")
    container.run(
        "sh",
        "-c",
        "printf '[Service]\\nWatchdogSec=4s\\n' > /etc/systemd/system/vtd.service.d/wd.conf",
    )
    container.run("systemctl", "daemon-reload")
    container.run("systemctl", "restart", "vtd.service")
    before = container.show("vtd.service", "MainPID")
    database = "/var/lib/private/vtd/extensions/tracker.sqlite3"
    release = "/run/vtd-test-release"
    # The holder lets go when told (killing nsenter would leave its child holding).
    holder = container.start(
        "/opt/vtd/bin/python",
        "-c",
        "import os, sqlite3, time\n"
        f"c = sqlite3.connect('{database}')\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        f"while not os.path.exists('{release}'): time.sleep(0.05)\n",
    )
    probe = f"import sqlite3; sqlite3.connect('{database}', timeout=0).execute('BEGIN IMMEDIATE')"
    try:
        wait_until(
            lambda: container.run("/opt/vtd/bin/python", "-c", probe, check=False).returncode,
            timeout=30,
            message="the write lock to be held",
        )
        stuck = container.start(
            *("vtctl", "--socket", SYSTEM_SOCKET, "--timeout", "60"),
            *("data", "set", "tracker", "run1", "hp", "0"),
        )
        wait_until(
            lambda: "Watchdog timeout" in _journal(container, user=False),
            timeout=60,
            message="systemd's watchdog to fire",
        )
    finally:
        container.run("touch", release)
        holder.wait(30)
        container.run("rm", release)
    assert stuck.wait(60) == 3  # the connection dropped: the write was never acknowledged
    assert "writer stuck" in _journal(container, user=False)

    def serving_again() -> bool:
        pid = container.show("vtd.service", "MainPID")
        ping = container.run("vtctl", "--socket", SYSTEM_SOCKET, "ping", check=False)
        return pid not in ("0", before) and ping.returncode == 0

    wait_until(serving_again, timeout=60, message="the restarted vtd to answer")
    _vtctl(container, "data", "set", "tracker", "run1", "hp", "58")
    assert _vtctl(container, "data", "get", "tracker", "run1") == {"hp": 58, "label": "123"}
    container.run("rm", "-r", "/etc/systemd/system/vtd.service.d")
    container.run("systemctl", "daemon-reload")


def _backed_up_and_restored_as_the_readme_says(container: Container) -> None:
    # As root, while the service runs; a write after the backup is undone by restoring it.
    container.run("rm", "-rf", "/root/vtd-backup", "/var/lib/private/vtd.old")  # a rerun's
    made = _vtctl(container, "backup", "/root/vtd-backup", "--data-dir", "/var/lib/vtd")
    assert made == {"dataDir": "/var/lib/vtd", "backup": "/root/vtd-backup", "files": 2}
    _vtctl(container, "data", "set", "tracker", "run1", "hp", "99")
    container.run("systemctl", "stop", "vtd.service", "vtd.socket")
    container.run("mv", "/var/lib/private/vtd", "/var/lib/private/vtd.old")
    container.run("cp", "-r", "/root/vtd-backup", "/var/lib/private/vtd")
    container.run("systemctl", "start", "vtd.socket")
    assert _vtctl(container, "data", "get", "tracker", "run1") == {"hp": 58, "label": "123"}
    _vtctl(container, "data", "set", "tracker", "run1", "hp", "60")  # the restored files are vtd's


def _seed_and_read(container: Container, *, user: bool) -> None:
    _vtctl(container, "ext", "register", "tracker", user=user)
    _vtctl(container, "char", "set", "tracker", "alice", "--name", "Alice", user=user)
    _vtctl(container, "inst", "set", "tracker", "run1", "alice", user=user)
    _vtctl(container, "data", "set", "tracker", "run1", "hp", "57", user=user)
    _vtctl(container, "data", "set", "tracker", "run1", "label", '"123"', user=user)


def _journal(container: Container, *, user: bool) -> str:
    """vtd.service's log since this boot (the journal keeps earlier runs' too)."""
    scope = ["--user"] if user else []
    command = ["journalctl", *scope, "-b", "-u", "vtd.service", "--no-pager"]
    return container.run(*command, user=user).stdout


def test_system_service_as_the_readme_installs_it(container: Container) -> None:
    # The user's editable install in their home is refused: the sandbox hides it.
    refused = container.run(f"{CHECKOUT}/.venv/bin/vtd", "install-units", check=False)
    assert refused.returncode == 1
    assert "ProtectHome=yes" in refused.stderr
    container.run("/opt/vtd/bin/vtd", "install-units")
    container.run("systemctl", "daemon-reload")
    container.run("systemctl", "enable", "--now", "vtd.socket")
    # Socket activation: nothing runs until the first client connects.
    assert container.show("vtd.service", "ActiveState") == "inactive"
    assert _vtctl(container, "ping") == {"message": "Pong!"}
    # Type=notify: active only once vtd said READY=1.
    assert container.show("vtd.service", "ActiveState") == "active"

    # The sandbox took hold: a dynamic user, no capabilities, seccomp, no_new_privs.
    pid = container.show("vtd.service", "MainPID")
    status = dict(
        line.split(":\t", 1)
        for line in container.run("cat", f"/proc/{pid}/status").stdout.splitlines()
        if ":\t" in line
    )
    assert status["Uid"].split()[0] != "0"
    assert int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"

    _seed_and_read(container, user=False)
    wait_until(
        lambda: "serving 1 extensions" in container.show("vtd.service", "StatusText"),
        message="the status line",
    )

    # The README's drop-in lets a group in: refused before, a member connects after.
    outsider = container.run(
        *("runuser", "-u", USER, "--", f"{CHECKOUT}/.venv/bin/vtctl"),
        *("--socket", SYSTEM_SOCKET, "ping"),
        check=False,
    )
    assert outsider.returncode == 3
    assert "Permission denied" in outsider.stderr
    assert "SocketGroup=" in outsider.stderr
    container.run("groupadd", "-f", "vtd-users")
    container.run("usermod", "-aG", "vtd-users", USER)
    container.run("mkdir", "-p", "/etc/systemd/system/vtd.socket.d")
    container.run(
        "sh",
        "-c",
        "printf '[Socket]\\nSocketGroup=vtd-users\\nSocketMode=0660\\n' "
        "> /etc/systemd/system/vtd.socket.d/group.conf",
    )
    container.run("systemctl", "daemon-reload")
    container.run("systemctl", "restart", "vtd.socket")
    member = container.run(
        *("runuser", "-u", USER, "--", f"{CHECKOUT}/.venv/bin/vtctl"),
        *("--compact", "--socket", SYSTEM_SOCKET, "data", "get", "tracker", "run1"),
    )
    assert json.loads(member.stdout) == {"hp": 57, "label": "123"}

    # ExecReload= re-reads the config file.
    container.run("mkdir", "-p", "/etc/vtd")
    container.run("sh", "-c", "echo 'log-level = \"debug\"' > /etc/vtd/vtd.toml")
    container.run("systemctl", "reload", "vtd.service")
    wait_until(lambda: "log level is debug" in _journal(container, user=False), message="reload")

    # Restart=on-failure brings it back after SIGKILL, with every value kept.
    _restarted_after_sigkill(container, user=False)
    data = _vtctl(container, "data", "get", "tracker", "run1")
    assert data == {"hp": 57, "label": "123"}

    _restarted_by_the_watchdog_when_a_commit_hangs(container)
    _backed_up_and_restored_as_the_readme_says(container)

    container.run("systemctl", "stop", "vtd.service", "vtd.socket")
    assert container.show("vtd.service", "Result") == "success"
    assert container.run("test", "-e", SYSTEM_SOCKET, check=False).returncode == 1
    assert "Traceback" not in _journal(container, user=False)


def test_user_service_as_the_readme_installs_it(container: Container) -> None:
    wait_until(
        lambda: container.show("user@1000.service", "ActiveState") == "active",
        timeout=30,
        message="the user manager",
    )
    container.run(f"{CHECKOUT}/.venv/bin/vtd", "install-units", "--user", user=True)
    container.run("systemctl", "--user", "daemon-reload", user=True)
    container.run("systemctl", "--user", "enable", "--now", "vtd.socket", user=True)
    assert container.show("vtd.service", "ActiveState", user=True) == "inactive"
    assert _vtctl(container, "ping", user=True) == {"message": "Pong!"}
    assert container.show("vtd.service", "ActiveState", user=True) == "active"

    _seed_and_read(container, user=True)
    container.run("systemctl", "--user", "reload", "vtd.service", user=True)
    wait_until(lambda: "received SIGHUP" in _journal(container, user=True), message="the reload")
    _restarted_after_sigkill(container, user=True)
    data = _vtctl(container, "data", "get", "tracker", "run1", user=True)
    assert data == {"hp": 57, "label": "123"}
    home_data = container.run("ls", f"/home/{USER}/.local/share/vtd/extensions").stdout
    assert "tracker.sqlite3" in home_data.split()
    assert "Traceback" not in _journal(container, user=True)
