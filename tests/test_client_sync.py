"""The blocking client against a real daemon: every method, every error."""

from __future__ import annotations

import errno
import itertools
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.wire import TOO_BIG_TO_SEND, DaemonProcess, wait_until
from vtd_client import (
    Busy,
    Character,
    Client,
    DaemonUnavailable,
    FullCharacter,
    FullInstance,
    Instance,
    InternalError,
    InvalidParams,
    MethodNotFound,
    NotFound,
    NotRegistered,
    ProtocolError,
    RpcError,
    StorageUnavailable,
    VtdError,
)
from vtd_client._errors import error_from_response

_names = itertools.count()


@pytest.fixture
def client(module_daemon: DaemonProcess):
    with Client(module_daemon.socket_path, timeout=10) as client:
        yield client


@pytest.fixture
def ext(client: Client):
    extension = client.extension(f"sync{next(_names)}")
    extension.register()
    extension.upsert_character("c1", "Alice")
    extension.upsert_instance("i1", "c1")
    return extension


def test_ping_probe_and_extensions(client: Client) -> None:
    assert client.ping() == "Pong!"
    assert client.ping("hi") == "Pong! hi"
    assert client.probe() == "0.1.0"
    client.register("listed-sync")
    assert "listed-sync" in client.list_extensions()
    client.deregister("listed-sync")
    assert "listed-sync" not in client.list_extensions()


def test_characters(ext) -> None:
    created = ext.upsert_character("c2", "Bob")
    assert isinstance(created, Character)
    assert created.name == "Bob"
    assert created.created_at.tzinfo == UTC
    assert created.created_at <= datetime.now(UTC)
    assert ext.upsert_character("c2").name == "Bob"
    assert [c.id for c in ext.list_characters()] == ["c1", "c2"]
    full = ext.get_character("c1")
    assert isinstance(full, FullCharacter)
    assert full.character.name == "Alice"
    assert [i.instance.id for i in full.instances] == ["i1"]
    ext.delete_character("c2")
    with pytest.raises(NotFound) as caught:
        ext.get_character("c2")
    assert (caught.value.kind, caught.value.id) == ("character", "c2")


def test_instances(ext) -> None:
    second = ext.upsert_instance("i2", "c1", name="two")
    assert isinstance(second, Instance)
    assert (second.character_id, second.name) == ("c1", "two")
    assert [i.id for i in ext.list_instances("c1")] == ["i1", "i2"]
    full = ext.get_instance("i2")
    assert isinstance(full, FullInstance)
    assert full.data == {}
    ext.delete_instance("i2")
    ext.upsert_instance("i3", "c1")
    assert ext.delete_all_instances("c1") == 2
    assert ext.list_instances("c1") == []


def test_data(ext) -> None:
    ext.set_data_key("i1", "s", "123")
    ext.set_data_key("i1", "n", 123)
    assert ext.get_data_key("i1", "s") == "123"
    assert ext.get_data("i1") == {"s": "123", "n": 123}
    ext.merge_data("i1", {"m": {"x": 1}})
    ext.delete_data_key("i1", "n")
    assert ext.get_data("i1") == {"s": "123", "m": {"x": 1}}
    assert ext.remove_data_keys("i1", ["s", "s", "nope"]) == 1
    ext.override_data("i1", {"o": [1, 2]})
    assert ext.get_data("i1") == {"o": [1, 2]}
    assert ext.clear_data("i1") is True
    assert ext.clear_data("i1") is False


def test_answers_larger_than_one_read_arrive_whole_and_in_order(client: Client, ext) -> None:
    # About 5 MB over many reads of the socket, then a small answer that may
    # share the last read with it: each call gets exactly its own line.
    data = {f"k{n}": f"{n}:" + "v" * 50_000 for n in range(100)}
    ext.override_data("i1", data)
    for _ in range(3):
        assert ext.get_data("i1") == data
        assert client.ping() == "Pong!"
    results = client.batch(
        [("ping", {}), ("data.get", {"extensionId": ext.extension_id, "id": "i1"})]
    )
    assert results == [{"message": "Pong!"}, data]


def test_cross_handle_reads(client: Client, ext) -> None:
    ext.set_data_key("i1", "k", {"v": True})
    other = client.cross(ext.extension_id)
    assert [c.id for c in other.list_characters()] == ["c1"]
    assert other.get_character("c1").instances[0].data == {"k": {"v": True}}
    assert [i.id for i in other.list_instances("c1")] == ["i1"]
    assert other.get_instance("i1").data == {"k": {"v": True}}
    assert other.get_data("i1") == {"k": {"v": True}}
    assert other.get_data_key("i1", "k") == {"v": True}
    assert not hasattr(other, "set_data_key")


def test_generic_call_and_batch(client: Client, ext) -> None:
    assert client.call("ping", message="x") == {"message": "Pong! x"}
    results = client.batch(
        [
            ("data.set", {"extensionId": ext.extension_id, "id": "i1", "key": "a", "value": 1}),
            ("data.getKey", {"extensionId": ext.extension_id, "id": "i1", "key": "a"}),
            ("data.getKey", {"extensionId": ext.extension_id, "id": "i1", "key": "missing"}),
        ],
        return_exceptions=True,
    )
    assert results[0]["success"] is True
    assert results[1] == {"a": 1}
    assert isinstance(results[2], NotFound)
    with pytest.raises(NotFound):
        client.batch([("data.getKey", {"extensionId": ext.extension_id, "id": "i1", "key": "x"})])


def test_errors_map_to_the_hierarchy(client: Client, ext) -> None:
    with pytest.raises(InvalidParams) as invalid:
        ext.set_data_key("i1", "", 1)
    assert invalid.value.field == "key"
    assert invalid.value.code == -32602
    with pytest.raises(NotRegistered) as unregistered:
        client.extension("never-registered").list_characters()
    assert unregistered.value.extension_id == "never-registered"
    with pytest.raises(NotFound) as missing:
        ext.get_data_key("i1", "nope")
    assert (missing.value.kind, missing.value.instance_id) == ("key", "i1")
    with pytest.raises(MethodNotFound):
        client.call("no.such.method")
    assert issubclass(MethodNotFound, ProtocolError)
    for error in (InvalidParams, NotRegistered, NotFound, Busy, DaemonUnavailable):
        assert issubclass(error, VtdError)


def test_daemon_unavailable_names_the_socket(short_dir) -> None:
    path = short_dir / "nobody.sock"
    with Client(path) as client, pytest.raises(DaemonUnavailable) as caught:
        client.ping()
    assert str(path) in str(caught.value)
    assert "vtd" in str(caught.value)


def test_a_socket_that_keeps_this_user_out_says_how_to_get_in() -> None:
    # Root passes file modes, so the refusal itself is seen in the live systemd test.
    denied = PermissionError(errno.EACCES, "Permission denied")
    message = str(DaemonUnavailable.from_os_error("/run/vtd/vtd.sock", denied))
    assert "Permission denied" in message
    assert "--socket-mode 0660" in message
    assert "SocketGroup=" in message
    assert "Is the daemon running?" not in message
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert "Is the daemon running?" in str(DaemonUnavailable.from_os_error("/x.sock", missing))


def test_busy_when_the_daemon_is_full(short_dir) -> None:
    with (
        DaemonProcess(short_dir / "s.sock", short_dir / "d", "--max-connections", "1") as d,
        Client(d.socket_path) as first,
        Client(d.socket_path) as second,
    ):

        def first_gets_in() -> bool:
            try:
                return first.ping() == "Pong!"
            except Busy:  # the startup probe's connection may not be released yet
                return False

        wait_until(first_gets_in, message="the one place to be free")
        with pytest.raises(Busy):
            second.ping()


def test_reconnects_after_a_daemon_restart(daemon_process: DaemonProcess) -> None:
    with Client(daemon_process.socket_path, timeout=10) as client:
        client.register("restart")
        assert daemon_process.stop() == 0
        daemon_process.start()
        assert client.list_extensions() == ["restart"]


def test_socket_from_environment(module_daemon: DaemonProcess, monkeypatch) -> None:
    monkeypatch.setenv("VTD_SOCKET", str(module_daemon.socket_path))
    with Client() as client:
        assert client.ping() == "Pong!"


def test_a_fallback_socket_dir_made_by_another_user_is_refused(monkeypatch) -> None:
    # Without XDG_RUNTIME_DIR a client looks in /tmp/vtd-$UID, which another
    # user may have made first, to answer in vtd's place.
    if os.getuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    squatted = Path(f"/tmp/vtd-{os.getuid()}")
    if squatted.exists():
        pytest.skip(f"{squatted} is in use here")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("VTD_SOCKET", raising=False)
    squatted.mkdir(mode=0o755)
    try:
        os.chown(squatted, 4321, 4321)
        with Client() as client, pytest.raises(DaemonUnavailable) as caught:
            client.ping()
        assert f"{squatted} belongs to uid 4321, not to you" in str(caught.value)
    finally:
        squatted.rmdir()


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (-32700, ProtocolError),
        (-32600, ProtocolError),
        (-32601, MethodNotFound),
        (-32602, InvalidParams),
        (-32603, InternalError),
        (-32001, NotRegistered),
        (-32002, NotFound),
        (-32003, Busy),
        (-32004, StorageUnavailable),
    ],
)
def test_every_code_has_its_exception(code: int, cls: type) -> None:
    error = error_from_response({"code": code, "message": "m", "data": {"field": "f"}})
    assert type(error) is cls
    assert isinstance(error, RpcError)
    assert error.code == code


def test_parse_errors_from_the_daemon_raise_protocol_error(module_daemon: DaemonProcess) -> None:
    with Client(module_daemon.socket_path) as client, pytest.raises(ProtocolError) as caught:
        client.call("ping", message=float("nan"))  # json.dumps writes NaN; not JSON
    assert caught.value.code == -32700


def test_storage_unavailable_carries_the_reason(daemon_process: DaemonProcess) -> None:
    with Client(daemon_process.socket_path, timeout=10) as client:
        client.register("damaged")
        assert daemon_process.stop() == 0
        path = daemon_process.data_dir / "extensions" / "damaged.sqlite3"
        path.write_bytes(b"garbage" * 1000)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        daemon_process.start()
        with pytest.raises(StorageUnavailable) as caught:
            client.extension("damaged").list_characters()
    assert caught.value.extension_id == "damaged"
    assert caught.value.reason is not None
    assert "move it aside" in caught.value.reason


def test_a_call_interrupted_while_sending_leaves_the_next_call_a_clean_line(
    daemon_process: DaemonProcess,
) -> None:
    # A stopped daemon reads nothing, so 8 MB cannot all be sent before the
    # alarm interrupts the send (as Ctrl-C would), with part of the line out.
    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    with Client(daemon_process.socket_path, timeout=10) as client:
        assert client.ping() == "Pong!"  # the connection is open
        daemon_process.signal(signal.SIGSTOP)
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            with pytest.raises(Interrupted):
                client.call("data.override", extensionId="x", id="i", data=TOO_BIG_TO_SEND)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            daemon_process.signal(signal.SIGCONT)
        assert client.ping() == "Pong!"
