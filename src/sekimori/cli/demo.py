"""``sekimori demo`` (what ``make run`` calls): everything on this machine.

Initialises the data directory, starts the server, enrolls this PC's agent on first
run, starts the agent, shows the device list, and stops everything on Ctrl-C.

Signed remote actions need an operator key the server never holds: on first run the
demo makes one (``<data>/demo-operator.pem``, like ``sekimori operator keygen``),
publishes keyring version 1 with its public key, and enrolls the agent with that
keyring pinned, so ``sekimori action create ... --key <data>/demo-operator.pem`` works
at once. A real deployment keeps operator keys off the server host (docs/actions.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from sekimori.cli.common import CommandError, settings_from_args
from sekimori.cli.server_cmds import announce
from sekimori.clock import now_us
from sekimori.server.bootstrap import initialize
from sekimori.server.store.devices import list_devices
from sekimori.server.store.tokens import create_token

__all__ = ["DEMO_OPERATOR_KEY", "run_demo"]

DEMO_OPERATOR_KEY = "demo-operator.pem"


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sekimori", *args], env=env)  # noqa: S603


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, component="demo")
    data = settings.data_path.resolve()
    env = dict(os.environ)
    env["SEKIMORI_DATA_DIR"] = str(data)
    # The demo serves this machine only: the agent endpoint stays on loopback.
    env.setdefault("SEKIMORI_SERVER__AGENT_HOST", "127.0.0.1")
    settings.data_dir = str(data)
    result = initialize(settings)
    announce(result)
    print(f"Data directory: {data}", flush=True)

    server = _spawn(["server"], env)
    agent: subprocess.Popen[bytes] | None = None
    try:
        state_dir = data / "agent"
        operator_key = data / DEMO_OPERATOR_KEY
        if not (state_dir / "identity.json").exists():
            operators = _demo_keyring(result.engine, operator_key)
            issued = create_token(
                result.engine, group="default", ttl_seconds=600, created_by="demo"
            )
            _enroll_when_up(
                settings.server.agent_port,
                issued.token,
                result.pki.ca_fingerprint(),
                state_dir,
                server,
                operators=operators,
            )
        # A folder the agent treats as a removable medium (a USB stick cannot be
        # assumed): copying a file into it raises the built-in data-leak alert.
        medium = data / "demo-usb"
        medium.mkdir(exist_ok=True)
        agent_env = dict(env)
        agent_env.setdefault(
            "SEKIMORI_AGENT__COLLECTORS__FILES__REMOVABLE_PATHS", json.dumps([str(medium)])
        )
        agent = _spawn(["agent", "run", "--state-dir", str(state_dir)], agent_env)
        _show_when_online(result.engine, settings.server.heartbeat_seconds, server)
        console = settings.server
        print(
            f"Running. Open the console at http://{console.console_host}:{console.console_port}/ "
            "and log in as admin (the password was printed on the first run; "
            "'sekimori user passwd admin' sets a new one). Press Ctrl-C to stop.\n"
            f"Try an alert: copy a file into {medium} (treated as a USB stick) and "
            "watch the dashboard.\n"
            "Try a signed action: sekimori action create kill_process --device ID "
            f"--param pid=PID --param name=NAME --key {operator_key}",
            flush=True,
        )
        # Block the signals only now, after the children started (they inherit the
        # mask), and wait for one; Ctrl-C also reaches the children directly.
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        try:
            while server.poll() is None and agent.poll() is None:
                if signal.sigtimedwait(stop_signals, 1.0) is not None:
                    break
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        return 0 if server.poll() in (None, 0) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        if agent is not None:
            _stop(agent)
        _stop(server)
        result.engine.dispose()
        print("Stopped.", flush=True)


def _demo_keyring(engine: sa.Engine, key_path: Path) -> str:
    """The fingerprint of the keyring the demo agent pins: the existing one, else
    version 1 made from a demo operator key (created if missing)."""
    from sekimori.cli.operator_keys import keygen, load_public_key, public_path
    from sekimori.server.actions import current_fingerprint, init_keyring

    fingerprint = current_fingerprint(engine)
    if fingerprint is not None:
        return fingerprint
    if not key_path.exists():
        keygen(argparse.Namespace(out=str(key_path), name="demo", passphrase_file=None))
    key = load_public_key(str(public_path(key_path)), label="make run demo key")
    return init_keyring(engine, [key], 1, 10, "demo")


def _enroll_when_up(
    port: int,
    token: str,
    fingerprint: str,
    state_dir: Path,
    server: subprocess.Popen[bytes],
    *,
    operators: str,
) -> None:
    from sekimori.agent.enroll import EnrollmentError, enroll

    deadline = time.monotonic() + 30
    while True:
        try:
            identity = enroll(
                state_dir,
                f"wss://localhost:{port}",
                token,
                fingerprint,
                operators=f"SHA256:{operators}",
            )
        except EnrollmentError as exc:
            if server.poll() is not None:
                raise CommandError("the server stopped during start-up") from None
            if time.monotonic() > deadline or "refused enrollment" in str(exc):
                raise CommandError(str(exc)) from None
            time.sleep(0.3)
            continue
        print(f"Enrolled this machine as device {identity.device_id}", flush=True)
        return


def _show_when_online(engine: sa.Engine, heartbeat: float, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        now = now_us()
        devices = list_devices(engine)
        if any(d.online(now, heartbeat) for d in devices):
            for d in devices:
                state = "online" if d.online(now, heartbeat) else "offline"
                print(f"  {d.id}  {d.hostname}  {d.os}  agent {d.agent_version}  {state}")
            return
        time.sleep(0.3)
    print("warning: the agent has not come online yet; see the log above", flush=True)
