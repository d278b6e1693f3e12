"""Remote control end to end: a real server, a real agent process enrolled with a
pinned operator keyring and remote control enabled in its local action policy, on
an Xvfb desktop with an xterm running ``cat > FILE``, and a viewer on the console's
live WebSocket.

Input sent before any grant is not forwarded; a ``remote_control`` command signed by
an operator and allowed by the PC's user (Enter in the control consent dialog) makes
the console forward the viewer's keystrokes, which reach the xterm; the orange bar is
shown meanwhile and removed when the viewer leaves; both ends are audited."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from websockets.sync.client import ClientConnection, connect

from sekimori.agent.actions.audit_log import LOG_FILE, verify_log
from sekimori.agent.actions.local_policy import DEFAULT_ALLOWED, LocalActionPolicy
from sekimori.agent.enroll import enroll
from sekimori.agent.indicator import CONTROL_CONSENT_TITLE, CONTROL_INDICATOR_TITLE
from sekimori.protocol.actions import RemoteControlParams
from sekimori.protocol.live_input import InputEvent, KeyInput
from sekimori.server import actions as service
from sekimori.server.store.audit import search_audit
from tests.console.conftest import as_user
from tests.console.test_live import _set_mode
from tests.desktop import Desktop, desktop_available, running_desktop
from tests.operators import Operator
from tests.processes import AgentProcess, ServerProcess, wait_for

pytestmark = pytest.mark.skipif(not desktop_available(), reason="needs Xvfb, openbox, xdotool")

OPERATOR = Operator("olga")


@dataclass
class ControlledPC:
    server: ServerProcess
    desktop: Desktop
    device_id: str
    agent: AgentProcess
    typed: Path
    window: int
    state: Path


@pytest.fixture(scope="module", name="pc")
def pc_fixture(console_server: ServerProcess) -> Iterator[ControlledPC]:
    engine = console_server.engine()
    fingerprint = service.init_keyring(engine, [OPERATOR.key], 1, 10, "root")
    with (
        tempfile.TemporaryDirectory(prefix="rc-") as tmp,
        running_desktop(Path(tmp) / "desk") as desktop,
    ):
        state = Path(tmp) / "pc"
        policy = LocalActionPolicy(allowed_actions=[*DEFAULT_ALLOWED, "remote_control"])
        with ThreadPoolExecutor(1) as pool:  # enrollment runs an event loop of its own
            identity = pool.submit(
                enroll,
                state,
                console_server.url,
                console_server.token(),
                console_server.fingerprint,
                operators=f"SHA256:{fingerprint}",
                action_policy=policy,
            ).result()
        agent = AgentProcess(state)
        agent.env.update(DISPLAY=desktop.display, XAUTHORITY=str(desktop.xauthority))
        agent.env.pop("WAYLAND_DISPLAY", None)
        agent.env.pop("XDG_SESSION_TYPE", None)
        agent.start()
        typed = Path(tmp) / "typed.txt"
        try:
            proc = desktop.spawn(
                [
                    "xterm",
                    "-xrm",
                    "*wmTimeout: 100",
                    "-T",
                    "typing",
                    "-e",
                    "sh",
                    "-c",
                    f"cat > {typed}",
                ]
            )
            window = desktop.wait_window("typing", pid=proc.pid)
            _set_mode(console_server, identity.device_id, "allowed")
            yield ControlledPC(
                console_server, desktop, identity.device_id, agent, typed, window, state
            )
        finally:
            agent.stop()


def _ws(pc: ControlledPC, user: str) -> ClientConnection:
    http = as_user(pc.server, user)
    cookie = http.cookies.get("sekimori_session")
    http.close()
    host = f"127.0.0.1:{pc.server.console_port}"
    return connect(
        f"ws://{host}/devices/{pc.device_id}/live/ws",
        additional_headers={"Cookie": f"sekimori_session={cookie}", "Origin": f"http://{host}"},
        max_size=8 * 1024 * 1024,
        open_timeout=10,
    )


def _next(ws: ClientConnection, key: str, timeout: float = 30) -> dict[str, object]:
    """The next text message carrying ``key`` ("state" or "control"); pictures and
    other messages before it are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, str):
            decoded: dict[str, object] = json.loads(message)
            if key in decoded:
                return decoded


def _keys(text: str) -> str:
    names = {"\n": "Return"}
    events: list[InputEvent] = []
    for char in text:
        name = names.get(char, char)
        events += [KeyInput(keysym=name, down=True), KeyInput(keysym=name, down=False)]
    return msgspec.json.encode(events).decode()


def _windows(desktop: Desktop, title: str) -> list[str]:
    done = subprocess.run(
        ["xdotool", "search", "--name", f"^{title}$"],
        env=desktop.env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.split()


def _audit(pc: ControlledPC, action: str) -> list[dict[str, object]]:
    entries = search_audit(pc.server.engine(), action=action, target=pc.device_id, limit=100)
    return [dict(json.loads(e.detail)) | {"actor": e.actor} for e in entries.entries]


def test_keystrokes_reach_the_pc_only_once_control_is_signed_and_allowed(
    pc: ControlledPC,
) -> None:
    engine = pc.server.engine()
    with _ws(pc, "alice") as ws:
        assert _next(ws, "state")["state"] == "waiting"
        assert _next(ws, "state")["state"] == "started"
        pc.desktop.focus(pc.window)
        ws.send("control")
        none = _next(ws, "control")
        assert none["control"] == "none"
        ws.send(_keys("nope\n"))  # no grant: not forwarded
        ws.send('[{"k": "type", "text": "x"}]')
        assert _next(ws, "control")["control"] == "invalid"
        nonce = service.create_command(
            engine, RemoteControlParams(max_seconds=120), [pc.device_id], requested_by="alice"
        )
        view = service.command_view(engine, nonce)
        service.add_command_signature(engine, nonce, OPERATOR.sign(view.digest), OPERATOR.name)
        dialog = pc.desktop.wait_window(CONTROL_CONSENT_TITLE.replace("?", r"\?"), timeout=30)
        assert pc.desktop.display  # the dialog is on the PC's screen, before any grant
        pc.desktop.focus(dialog)
        pc.desktop.xdotool("key", "Return")
        # The console finds the grant in the store; the PC says it bound it to this
        # session (either may come first; "ready" after "granted" is not repeated).
        assert str(_next(ws, "control")["control"]) in ("ready", "granted")
        wait_for(lambda: service.target_results(engine, nonce)[0].state == "done", 15, "done", 0.1)
        (target,) = service.target_results(engine, nonce)
        assert target.reason.startswith("control granted until"), target.reason
        assert _windows(pc.desktop, CONTROL_INDICATOR_TITLE)
        pc.desktop.focus(pc.window)
        ws.send(_keys("hello\n"))
        wait_for(
            lambda: pc.typed.exists() and pc.typed.read_text() == "hello\n",
            15,
            "the keystrokes",
            0.1,
        )
    # The viewer left: the session ends on the PC, and with it the control.
    wait_for(lambda: not _windows(pc.desktop, CONTROL_INDICATOR_TITLE), 15, "bar removed", 0.1)
    wait_for(lambda: bool(_audit(pc, "live.control_end")), 10, "control_end audited", 0.1)
    (start,) = _audit(pc, "live.control_start")
    assert (start["actor"], start["nonce"], start["signers"]) == ("alice", nonce, ["olga"])
    (end,) = _audit(pc, "live.control_end")
    assert end["nonce"] == nonce and end["events"] == 12
    assert pc.typed.read_text() == "hello\n"
    # The PC's own log has the command, the grant and its end, chained.
    log = pc.state / LOG_FILE
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    mine = [(e["step"], e.get("event", "")) for e in entries if e["nonce"] == nonce]
    assert mine == [
        ("received", ""),
        ("control", "remote_control.granted"),
        ("done", ""),
        ("control", "remote_control.ended"),
    ], mine
    assert verify_log(log).ok
