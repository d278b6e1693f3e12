"""Live view end to end: a real server, a real agent process on a real X display
(Xvfb + openbox), and a viewer on the console's WebSocket with a logged-in session.

The viewer receives pictures at two or more a second; the PC shows the red indicator
bar (found by its window name) while watched, and not after; consent asked and
declined with Escape ends in ``refused`` with no picture; a user without the
permission, or without the device's group, is refused by URL and sees no link; each
session is in the audit trail with its duration.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from sekimori.agent.indicator import CONSENT_TITLE, INDICATOR_TITLE
from sekimori.clock import now_us
from sekimori.protocol.policy import LiveViewPolicy, Policy
from sekimori.server.console.routes.live import FRAME_HEADER
from sekimori.server.store.audit import search_audit
from sekimori.server.store.policies import save_policy
from sekimori.server.store.users import create_user
from tests.console.conftest import PASSWORD, as_user
from tests.desktop import Desktop, desktop_available, running_desktop
from tests.processes import AgentProcess, ServerProcess, wait_for

pytestmark = pytest.mark.skipif(not desktop_available(), reason="needs Xvfb, openbox, xdotool")

# name -> (role, groups; empty means every group)
EXTRA_USERS = {
    "olive": ("operator", ()),
    "vera": ("viewer", ()),
    "hank": ("administrator", ("hr",)),
}


@dataclass
class LivePC:
    server: ServerProcess
    desktop: Desktop
    device_id: str
    agent: AgentProcess


def _set_mode(server: ServerProcess, device_id: str, mode: str) -> None:
    group = server.scalar("SELECT id FROM groups WHERE name = 'default'")
    policy = Policy(live_view=LiveViewPolicy(mode=mode, consent_timeout_seconds=20))  # type: ignore[arg-type]
    version = save_policy(server.engine(), group, policy, "test", now_us=now_us())
    wait_for(
        lambda: (
            server.scalar(
                "SELECT COUNT(*) FROM device_policy WHERE device_id = :d AND version = :v",
                d=device_id,
                v=version,
            )
            == 1
        ),
        20,
        f"policy version {version} applied",
        0.1,
    )


@pytest.fixture(scope="module", name="pc")
def pc_fixture(console_server: ServerProcess) -> Iterator[LivePC]:
    """A PC on an Xvfb desktop with a connected agent whose policy allows live view
    (the module's console server; extra users olive, vera and hank)."""
    for name, (role, groups) in EXTRA_USERS.items():
        create_user(
            console_server.engine(),
            name,
            PASSWORD,
            role,  # type: ignore[arg-type]
            groups_=list(groups),
            all_groups=not groups,
        )
    with (
        tempfile.TemporaryDirectory(prefix="live-") as tmp,
        running_desktop(Path(tmp) / "desk") as desktop,
    ):
        state = Path(tmp) / "pc"
        # In a thread: enrollment runs its own event loop, and a module with browser
        # tests has Playwright's running in this one.
        with ThreadPoolExecutor(1) as pool:
            identity = pool.submit(console_server.enroll, state).result()
        agent = AgentProcess(state)
        agent.env.update(DISPLAY=desktop.display, XAUTHORITY=str(desktop.xauthority))
        agent.env.pop("WAYLAND_DISPLAY", None)
        agent.env.pop("XDG_SESSION_TYPE", None)
        agent.start()
        try:
            desktop.xterm("work in progress")  # something on the screen
            _set_mode(console_server, identity.device_id, "allowed")
            yield LivePC(console_server, desktop, identity.device_id, agent)
        finally:
            agent.stop()


def _ws(pc: LivePC, user: str, query: str = "", origin: str | None = None) -> ClientConnection:
    http = as_user(pc.server, user)
    cookie = http.cookies.get("sekimori_session")
    http.close()
    host = f"127.0.0.1:{pc.server.console_port}"
    return connect(
        f"ws://{host}/devices/{pc.device_id}/live/ws{query}",
        additional_headers={
            "Cookie": f"sekimori_session={cookie}",
            "Origin": origin or f"http://{host}",
        },
        max_size=8 * 1024 * 1024,
        open_timeout=10,
    )


def windows(desktop: Desktop, title: str) -> list[str]:
    """The X windows named exactly ``title`` (override-redirect ones too)."""
    done = subprocess.run(
        ["xdotool", "search", "--name", f"^{title}$"],
        env=desktop.env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.split()


def _state(ws: ClientConnection, timeout: float = 30) -> dict[str, str]:
    """The next state message (pictures before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(message, str):
            state: dict[str, str] = json.loads(message)
            return state


def _audit(pc: LivePC, action: str, session: str | None = None) -> list[dict[str, object]]:
    entries = search_audit(pc.server.engine(), action=action, target=pc.device_id, limit=100)
    found = [dict(json.loads(e.detail)) | {"actor": e.actor} for e in entries.entries]
    return [d for d in found if session is None or d.get("session") == session]


def test_a_live_session_delivers_frames_and_shows_the_indicator(pc: LivePC) -> None:
    assert not windows(pc.desktop, INDICATOR_TITLE)
    with _ws(pc, "alice") as ws:
        assert _state(ws)["state"] == "waiting"
        assert _state(ws)["state"] == "started"
        # The bar is up before the first picture is taken.
        assert windows(pc.desktop, INDICATOR_TITLE)
        arrivals: list[float] = []
        first = time.monotonic()
        while time.monotonic() - first < 3.0:
            message = ws.recv(timeout=5)
            assert isinstance(message, bytes)
            capture_us, width, height, monitor, fmt = FRAME_HEADER.unpack_from(message)
            assert message[FRAME_HEADER.size : FRAME_HEADER.size + 2] == b"\xff\xd8"  # JPEG
            assert (width, height, monitor, fmt) == (640, 400, 1, 0)  # half of 1280x800
            assert abs(now_us() - capture_us) < 5_000_000
            arrivals.append(time.monotonic())
        fps = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        assert fps >= 2.0, arrivals
        assert windows(pc.desktop, INDICATOR_TITLE)
    # The viewer left: the agent is told to stop and removes the bar.
    wait_for(lambda: not windows(pc.desktop, INDICATOR_TITLE), 10, "indicator removed", 0.1)
    wait_for(lambda: bool(_audit(pc, "live.end")), 10, "live.end audited", 0.1)
    start = _audit(pc, "live.start")[0]
    session = str(start["session"])
    assert start["actor"] == "alice"
    end = _audit(pc, "live.end", session)[0]
    assert end["actor"] == "alice"
    assert float(str(end["duration_s"])) >= 3.0
    assert int(str(end["frames"])) >= len(arrivals)


def test_consent_declined_with_escape_is_refused_without_a_picture(pc: LivePC) -> None:
    with _ws(pc, "alice", "?consent=1") as ws:
        assert _state(ws)["state"] == "waiting"
        dialog = pc.desktop.wait_window(CONSENT_TITLE.replace("?", r"\?"))
        assert not windows(pc.desktop, INDICATOR_TITLE)
        pc.desktop.focus(dialog)
        pc.desktop.xdotool("key", "Escape")
        message = ws.recv(timeout=10)
        assert isinstance(message, str), "a picture was sent before consent"
        state = json.loads(message)
        assert state == {"state": "refused", "reason": "the user did not allow it"}
    assert not windows(pc.desktop, INDICATOR_TITLE)
    assert not windows(pc.desktop, CONSENT_TITLE.replace("?", r"\?"))
    wait_for(
        lambda: any(str(e["outcome"]).startswith("refused") for e in _audit(pc, "live.end")),
        10,
        "refusal audited",
        0.1,
    )


def test_consent_given_with_enter_starts_the_session(pc: LivePC) -> None:
    with _ws(pc, "alice", "?consent=1") as ws:
        assert _state(ws)["state"] == "waiting"
        dialog = pc.desktop.wait_window(CONSENT_TITLE.replace("?", r"\?"))
        pc.desktop.focus(dialog)
        pc.desktop.xdotool("key", "Return")
        assert _state(ws)["state"] == "started"
        assert isinstance(ws.recv(timeout=5), bytes)
    wait_for(lambda: not windows(pc.desktop, INDICATOR_TITLE), 10, "indicator removed", 0.1)


@pytest.mark.parametrize("user", ["olive", "vera"])
def test_a_user_without_the_permission_is_refused_by_url_and_menu(pc: LivePC, user: str) -> None:
    with closing(as_user(pc.server, user)) as http:
        assert http.get(f"/devices/{pc.device_id}/live").status_code == 403
        page = http.get(f"/devices/{pc.device_id}")
        assert f"/devices/{pc.device_id}/live" not in page.text
    with pytest.raises(InvalidStatus) as refused:
        _ws(pc, user)
    assert refused.value.response.status_code == 403


def test_an_administrator_of_other_groups_cannot_find_the_device(pc: LivePC) -> None:
    with closing(as_user(pc.server, "hank")) as http:
        assert http.get(f"/devices/{pc.device_id}/live").status_code == 404
    with pytest.raises(InvalidStatus) as refused:
        _ws(pc, "hank")
    assert refused.value.response.status_code == 403


def test_the_link_and_page_for_an_administrator(pc: LivePC) -> None:
    with closing(as_user(pc.server, "alice")) as http:
        page = http.get(f"/devices/{pc.device_id}")
        assert 'id="device-live"' in page.text
        live = http.get(f"/devices/{pc.device_id}/live")
        assert live.status_code == 200
        assert 'id="live-canvas"' in live.text
        assert "<script>" not in live.text  # CSP: no inline script


def test_a_socket_from_another_origin_is_refused(pc: LivePC) -> None:
    with pytest.raises(InvalidStatus) as refused:
        _ws(pc, "alice", origin="https://evil.example")
    assert refused.value.response.status_code == 403


def test_the_pcs_policy_decides_last(pc: LivePC) -> None:
    _set_mode(pc.server, pc.device_id, "off")
    try:
        with _ws(pc, "alice") as ws:
            assert _state(ws)["state"] == "waiting"
            assert _state(ws) == {
                "state": "refused",
                "reason": "live view is not allowed by this PC's policy",
            }
        assert not windows(pc.desktop, INDICATOR_TITLE)
    finally:
        _set_mode(pc.server, pc.device_id, "allowed")


def test_a_recorded_session_keeps_a_picture_a_second_with_the_screen_frames(pc: LivePC) -> None:
    def recorded() -> int:
        return pc.server.scalar(
            "SELECT COUNT(*) FROM events WHERE device_id = :d AND kind = 'screen.frame'",
            d=pc.device_id,
        )

    before = recorded()
    with _ws(pc, "alice", "?record=1") as ws:
        assert _state(ws)["state"] == "waiting"
        assert _state(ws)["state"] == "started"
        first = time.monotonic()
        while time.monotonic() - first < 3.5:
            assert isinstance(ws.recv(timeout=5), bytes)
    # 3.5 s at one a second: 3 or 4 pictures, through the outbox, stored as frames.
    wait_for(lambda: recorded() - before >= 3, 20, "recorded frames stored", 0.2)
    assert recorded() - before <= 5
    with pc.server.engine().connect() as conn:
        payloads = [
            json.loads(p)
            for (p,) in conn.exec_driver_sql(
                "SELECT payload FROM events WHERE device_id = ? AND kind = 'screen.frame'",
                (pc.device_id,),
            )
        ]
    assert {p["trigger"] for p in payloads} == {"live"}
    assert {(p["width"], p["height"], p["screen_width"]) for p in payloads} == {(640, 400, 1280)}
    starts = [e for e in _audit(pc, "live.start") if e.get("recorded")]
    assert len(starts) == 1 and starts[0]["actor"] == "alice"


def test_a_thumbnail_on_demand_is_one_small_audited_frame(pc: LivePC) -> None:
    alice = as_user(pc.server, "alice")
    try:
        listing = alice.get("/devices").text
        assert 'id="load-thumbnails"' in listing
        assert f'data-thumbnail="/devices/{pc.device_id}/thumbnail"' in listing
        shot = alice.get(f"/devices/{pc.device_id}/thumbnail", timeout=30)
        assert shot.status_code == 200, shot.text
        assert shot.headers["content-type"] == "image/jpeg"
        assert shot.headers["cache-control"] == "no-store"
        with Image.open(io.BytesIO(shot.content)) as picture:
            assert picture.size == (192, 120)  # 0.15 of the 1280x800 desktop
        # Embedded by another site: no session is opened.
        crossed = alice.get(
            f"/devices/{pc.device_id}/thumbnail", headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert crossed.status_code == 403
    finally:
        alice.close()
    wait_for(
        lambda: not windows(pc.desktop, INDICATOR_TITLE), 10, "the indicator gone with it", 0.1
    )
    taken = [e for e in _audit(pc, "live.thumbnail") if e.get("outcome") == "taken"]
    assert len(taken) == 1 and taken[0]["actor"] == "alice"


@pytest.mark.parametrize("user", ["olive", "vera"])
def test_thumbnails_need_the_live_permission(pc: LivePC, user: str) -> None:
    http = as_user(pc.server, user)
    try:
        assert http.get(f"/devices/{pc.device_id}/thumbnail").status_code == 404
        assert "load-thumbnails" not in http.get("/devices").text
    finally:
        http.close()
