"""The Node.js client (``client/node/vtd.js``) against a real daemon, run by ``node``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.wire import DaemonProcess
from vtd_client import Client

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed (.ci/run installs Debian's nodejs)"
)

NODE_DIR = Path(__file__).resolve().parent.parent / "client" / "node"
REQUIRE = f"const vtd = require({json.dumps(str(NODE_DIR / 'vtd.js'))});\n"


def node(script: str, *args: str) -> subprocess.Popen[str]:
    """Run ``script`` (with ``vtd`` required) in node; lines on stdout, one per event."""
    assert NODE is not None
    return subprocess.Popen(
        [NODE, "-e", REQUIRE + script, "--", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


def test_the_tour_prints_what_it_promises(daemon_process: DaemonProcess) -> None:
    result = subprocess.run(
        [str(NODE), str(NODE_DIR / "tour.js"), str(daemon_process.socket_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        'hp: "123" (string)',
        "keys: 101",
        "cross read: Alice has 1 instance(s)",
        "not found: key mana",
        "invalid params: value is required",
    ]


def test_the_socket_is_found_as_the_daemon_finds_it() -> None:
    script = """
const env = { VTD_SOCKET: '/a/vtd.sock', XDG_RUNTIME_DIR: '/run/user/7' };
console.log(vtd.socketPath('/explicit.sock', env));
console.log(vtd.socketPath(undefined, env));
console.log(vtd.socketPath(undefined, { XDG_RUNTIME_DIR: '/run/user/7' }));
console.log(vtd.socketPath(undefined, {}));
console.log(process.getuid());
"""
    lines = finished(node(script)).splitlines()
    assert lines[:3] == ["/explicit.sock", "/a/vtd.sock", "/run/user/7/vtd/vtd.sock"]
    assert lines[3] == f"/tmp/vtd-{lines[4]}/vtd.sock"


def test_no_daemon_is_a_connection_error_that_says_what_to_do(tmp_path: Path) -> None:
    script = """
new vtd.VtdClient({ socket: process.argv[1] }).call('probe').catch((error) => {
  console.log(error instanceof vtd.VtdConnectionError && error instanceof vtd.VtdError);
  console.log(error.message);
});
"""
    lines = finished(node(script, str(tmp_path / "none.sock"))).splitlines()
    assert lines[0] == "true"
    assert str(tmp_path / "none.sock") in lines[1]
    assert "Is the daemon running? Start it with `vtd`" in lines[1]


def test_a_fallback_dir_another_user_made_is_refused() -> None:
    # As the Python client: another local user could make /tmp/vtd-$UID first.
    if os.getuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    squatted = Path(f"/tmp/vtd-{os.getuid()}")
    if squatted.exists():
        pytest.skip(f"{squatted} is in use here")
    squatted.mkdir(mode=0o755)
    try:
        os.chown(squatted, 4321, 4321)
        script = """
delete process.env.VTD_SOCKET;
delete process.env.XDG_RUNTIME_DIR;
new vtd.VtdClient().call('ping').catch((error) => console.log(error.name, error.message));
"""
        out = finished(node(script))
    finally:
        squatted.rmdir()
    assert out.startswith(f"VtdConnectionError cannot connect to vtd at {squatted}/vtd.sock")
    assert f"{squatted} belongs to uid 4321, not to you; refusing to connect" in out


def test_rpc_errors_carry_code_and_data(daemon_process: DaemonProcess) -> None:
    script = """
const client = new vtd.VtdClient({ socket: process.argv[1] });
client.call('data.get', { extensionId: 'nobody', id: 'x' }).catch((error) => {
  console.log(JSON.stringify([error.name, error.code === vtd.Codes.NOT_REGISTERED, error.data]));
  client.close();
});
"""
    out = finished(node(script, str(daemon_process.socket_path)))
    assert json.loads(out) == ["VtdRpcError", True, {"extensionId": "nobody"}]


def test_a_script_that_never_closes_still_exits_once_its_calls_are_answered(
    daemon_process: DaemonProcess,
) -> None:
    # Nothing awaits the calls: only the calls in flight keep Node running, and
    # the idle connection left behind does not.
    script = """
const client = new vtd.VtdClient({ socket: process.argv[1] });
client.call('ping', { message: 'first' }).then(({ message }) => {
  console.log(message);
  return client.call('ping', { message: 'second' });
}).then(({ message }) => console.log(message));
"""
    process = node(script, str(daemon_process.socket_path))
    assert finished(process).splitlines() == ["Pong! first", "Pong! second"]


def test_closing_while_connecting_fails_the_call_and_lets_node_exit(
    daemon_process: DaemonProcess,
) -> None:
    script = """
const client = new vtd.VtdClient({ socket: process.argv[1] });
client.call('probe').catch((error) => console.log(error.name, error.message));
client.close();
"""
    out = finished(node(script, str(daemon_process.socket_path)))
    assert out.startswith("VtdConnectionError the client was closed while connecting")


def test_an_oversized_call_is_refused_without_losing_the_connection(
    daemon_process: DaemonProcess,
) -> None:
    script = """
const client = new vtd.VtdClient({ socket: process.argv[1] });
(async () => {
  await client.call('probe');
  const stream = client._stream;
  const huge = client.call('ping', { message: 'x'.repeat(17 * 1024 * 1024) });
  const [big, small] = await Promise.allSettled([huge, client.call('ping', { message: 'ok' })]);
  console.log(JSON.stringify([big.reason.name, big.reason.code, big.reason.data, small.value]));
  console.log(client._stream === stream);
  client.close();
})();
"""
    lines = finished(node(script, str(daemon_process.socket_path))).splitlines()
    assert json.loads(lines[0]) == [
        "VtdRpcError",
        -32600,
        {"reason": "message too large"},
        {"message": "Pong! ok"},
    ]
    assert lines[1] == "true"  # the same connection: nothing was sent that vtd would close it for


def test_a_large_answer_arrives_whole(daemon_process: DaemonProcess) -> None:
    value = "é" * (4 * 1024 * 1024)  # 8 MiB of UTF-8, split across many reads
    with Client(daemon_process.socket_path) as setup:
        tracker = setup.extension("big")
        tracker.register()
        tracker.upsert_character("c")
        tracker.upsert_instance("i", character_id="c")
        tracker.set_data_key("i", "text", value)
    script = """
const client = new vtd.VtdClient({ socket: process.argv[1] });
Promise.all([
  client.call('data.getKey', { extensionId: 'big', id: 'i', key: 'text' }),
  client.call('ping'),
]).then(([big, pong]) => {
  console.log(big.text.length, big.text === '\u00e9'.repeat(4 * 1024 * 1024), pong.message);
  client.close();
});
"""
    out = finished(node(script, str(daemon_process.socket_path)))
    assert out == f"{len(value)} true Pong!\n"


def test_a_stalled_daemon_times_the_call_out(daemon_process: DaemonProcess) -> None:
    script = """
const client = new vtd.VtdClient({ socket: process.argv[1], timeoutMs: 300 });
client.call('probe').then(() => {
  console.log('connected');
  return new Promise((resolve) => process.stdin.once('data', resolve));
}).then(() => client.call('probe')).catch((error) => {
  console.log(error.name);
  client.close();
  process.stdin.destroy();
});
"""
    process = node(script, str(daemon_process.socket_path))
    assert process.stdout is not None
    assert process.stdin is not None
    assert process.stdout.readline() == "connected\n"
    daemon_process.signal(signal.SIGSTOP)
    try:
        process.stdin.write("go\n")
        process.stdin.flush()
        assert finished(process) == "VtdTimeoutError\n"
    finally:
        daemon_process.signal(signal.SIGCONT)


def test_the_next_call_reconnects_after_a_restart(daemon_process: DaemonProcess) -> None:
    script = """
const client = new vtd.VtdClient({ socket: process.argv[1] });
const lines = require('node:readline').createInterface({ input: process.stdin });
const ask = () => client.call('ping', { message: 'again' }).then(
  (result) => console.log(result.message),
  (error) => console.log(error.name),
);
ask().then(() => lines.on('line', ask).on('close', () => client.close()));
"""
    process = node(script, str(daemon_process.socket_path))
    assert process.stdout is not None
    assert process.stdin is not None
    assert process.stdout.readline() == "Pong! again\n"
    assert daemon_process.stop() == 0
    daemon_process.start()
    process.stdin.write("ping\n")
    process.stdin.flush()
    assert process.stdout.readline() == "Pong! again\n"
    assert finished(process) == ""  # stdin closed: the client closes, node exits


def test_sigkill_loses_no_write_the_node_client_saw_acknowledged(
    daemon_process: DaemonProcess,
) -> None:
    with Client(daemon_process.socket_path) as setup:
        tracker = setup.extension("tracker")
        tracker.register()
        tracker.upsert_character("c")
        tracker.upsert_instance("i", character_id="c")
    # Eight writers, each awaiting its last write before sending the next;
    # every acknowledgement is printed the moment it arrives.
    script = """
const tracker = new vtd.VtdClient({ socket: process.argv[1] }).extension('tracker');
async function writer(w) {
  for (let n = 0; ; n++) {
    try {
      await tracker.call('data.set', { id: 'i', key: `w${w}-${n}`, value: n });
    } catch (error) {
      console.log(`lost ${error.name} ${error.message}`);
      return;
    }
    console.log(`ack w${w}-${n} ${n}`);
  }
}
Promise.all(Array.from({ length: 8 }, (_, w) => writer(w)));
"""
    process = node(script, str(daemon_process.socket_path))
    assert process.stdout is not None
    acknowledged: dict[str, int] = {}
    while len(acknowledged) < 300:
        _, key, value = process.stdout.readline().split()
        acknowledged[key] = int(value)
    daemon_process.kill()
    lines = finished(process).splitlines()
    for line in lines:
        if line.startswith("ack "):
            _, key, value = line.split()
            acknowledged[key] = int(value)
    losses = [line for line in lines if line.startswith("lost ")]
    assert len(losses) == 8
    assert all(line.startswith("lost VtdConnectionError ") for line in losses)
    assert any("may or may not have been applied" in line for line in losses)

    daemon_process.start()
    with Client(daemon_process.socket_path) as after:
        stored = after.extension("tracker").get_data("i")
    missing = {key for key, value in acknowledged.items() if stored.get(key) != value}
    assert not missing, f"{len(missing)} acknowledged writes lost: {sorted(missing)[:5]}"
