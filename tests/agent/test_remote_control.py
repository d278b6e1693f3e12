"""Remote control on a real X display (Xvfb + openbox): the ``remote_control`` handler
asks the person (Enter allows, Escape declines), the grant shows the orange bar, and
``live_input`` typed through the protocol reaches an xterm running ``cat > FILE``; a
click lands where the viewer pointed on the half-size picture. Without a grant, for
another command or session, after expiry, or once the person took control back,
nothing is injected; every key still held is released when control ends.

The executor's checks (signature, device, nonce, local policy) run before the handler
and are tested with it; here the handler gets a verified command's context."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from Xlib import XK

from sekimori.agent.actions.base import ActionContext, Outcome
from sekimori.agent.actions.remote import remote_control
from sekimori.agent.indicator import (
    BAR_HEIGHT,
    CONTROL_CONSENT_TITLE,
    CONTROL_INDICATOR_TITLE,
    INDICATOR_TITLE,
)
from sekimori.agent.live import LiveView
from sekimori.agent.platform.linux.x11 import _open_display
from sekimori.clock import now_us
from sekimori.protocol.actions import CommandBody, RemoteControlParams
from sekimori.protocol.live_input import (
    ButtonInput,
    InputEvent,
    KeyInput,
    PointerMove,
    WheelInput,
)
from sekimori.protocol.messages import LiveControl, LiveFrame, LiveInput, LiveStart, Message
from sekimori.protocol.policy import LiveViewPolicy
from tests.desktop import Desktop, desktop_available, running_desktop
from tests.processes import wait_for

pytestmark = pytest.mark.skipif(not desktop_available(), reason="needs Xvfb, openbox, xdotool")

NONCE = "ab" * 16
OTHER_NONCE = "cd" * 16
T = TypeVar("T")


@pytest.fixture(scope="module", name="desk")
def desk_fixture() -> Iterator[Desktop]:
    with tempfile.TemporaryDirectory(prefix="rc-") as tmp, running_desktop(Path(tmp)) as desk:
        yield desk


class PC:
    """A LiveView on the test display and what it sent."""

    def __init__(self, desk: Desktop, consent_seconds: int = 20) -> None:
        self.desk = desk
        self.sent: list[Message] = []
        self.live = LiveView(
            lambda: LiveViewPolicy(mode="allowed", consent_timeout_seconds=consent_seconds),
            display=desk.display,
            xauthority=str(desk.xauthority),
            journal=lambda event, detail: self.journal.append((event, detail)),
        )
        self.journal: list[tuple[str, dict[str, object]]] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def start(self, session_id: str = "aa", viewer: str = "alice") -> None:
        self.live.start(LiveStart(session_id=session_id, viewer=viewer, max_fps=5), self.send)
        await until(
            lambda: any(isinstance(m, LiveFrame) and m.session_id == session_id for m in self.sent),
            "a picture",
        )

    def controls(self) -> list[tuple[str, str, str]]:
        return [(m.session_id, m.state, m.reason) for m in self.sent if isinstance(m, LiveControl)]

    def type(self, events: list[InputEvent], nonce: str = NONCE, session: str = "aa") -> None:
        self.live.input(LiveInput(session_id=session, nonce=nonce, events=events))


async def until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def keys(text: str) -> list[InputEvent]:
    """Key events typing ``text`` on a US keyboard map (Shift for capitals and !)."""
    names = {" ": "space", "!": "exclam", "\n": "Return"}
    events: list[InputEvent] = []
    for char in text:
        shifted = char.isupper() or char == "!"
        name = names.get(char, char)
        if shifted:
            events.append(KeyInput(keysym="Shift_L", down=True))
        events += [KeyInput(keysym=name, down=True), KeyInput(keysym=name, down=False)]
        if shifted:
            events.append(KeyInput(keysym="Shift_L", down=False))
    return events


def context(user: str = "alice", nonce: str = NONCE, live: LiveView | None = None) -> ActionContext:
    params = RemoteControlParams(max_seconds=60)
    body = CommandBody(
        deployment="d",
        nonce=nonce,
        params=params,
        devices_root="0" * 64,
        device_count=1,
        issued_at_us=now_us(),
        expires_at_us=now_us() + 600_000_000,
        requested_by=user,
    )
    hooks: dict[str, Callable[..., object]] = {} if live is None else {"live": lambda: live}
    return ActionContext(
        body=body, signers=frozenset({"k"}), state_dir=Path("/nonexistent"), hooks=hooks
    )


def windows(desk: Desktop, title: str) -> list[str]:
    done = subprocess.run(
        ["xdotool", "search", "--name", f"^{title}$"],
        env=desk.env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.split()


@pytest.fixture(name="spawn")
def spawn_fixture(desk: Desktop) -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    """Start X clients on the module's desktop that end with the test."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=desk.env, stdin=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.terminate()
        proc.wait(10)


Spawn = Callable[[list[str]], "subprocess.Popen[bytes]"]


def typing_target(desk: Desktop, spawn: Spawn, path: Path) -> int:
    """An xterm running ``cat > path``, focused; returns its window."""
    title = f"typing {path.parent.name}"
    proc = spawn(
        ["xterm", "-xrm", "*wmTimeout: 100", "-T", title, "-e", "sh", "-c", f"cat > {path}"]
    )
    window = desk.wait_window(title, pid=proc.pid)
    desk.focus(window)
    return window


async def answer(desk: Desktop, key: str) -> None:
    """Answer the remote-control consent dialog with ``key``."""

    def press() -> None:
        dialog = desk.wait_window(CONTROL_CONSENT_TITLE.replace("?", r"\?"))
        desk.focus(dialog)
        desk.xdotool("key", key)

    await asyncio.to_thread(press)


def pressed(desk: Desktop, keysym: str) -> bool:
    display = _open_display(desk.display, str(desk.xauthority))
    try:
        code = display.keysym_to_keycode(XK.string_to_keysym(keysym))
        keymap = display.query_keymap()
        return bool(keymap[code // 8] & (1 << (code % 8)))
    finally:
        display.close()


def test_granted_input_types_into_the_window_and_clicks_where_pointed(
    desk: Desktop, spawn: Spawn, tmp_path: Path
) -> None:
    typed = tmp_path / "typed.txt"
    clicks = tmp_path / "clicks.txt"
    window = typing_target(desk, spawn, typed)
    pc = PC(desk)

    async def scenario() -> Outcome:
        await pc.start()
        # Before any grant: dropped, counted, nothing typed.
        pc.type(keys("x\n"))
        assert pc.live.dropped_input == 4
        outcome_task = asyncio.create_task(
            remote_control(RemoteControlParams(), context(live=pc.live))
        )
        await answer(desk, "Return")
        outcome = await outcome_task
        await until(lambda: bool(windows(desk, CONTROL_INDICATOR_TITLE)), "the control bar")
        assert windows(desk, INDICATOR_TITLE)  # the red bar stays as well
        await asyncio.to_thread(desk.focus, window)
        pc.type(keys("hello World!\n"))
        await until(lambda: typed.exists() and typed.read_text() == "hello World!\n", "the text")
        # A capital or "!" sent alone (no Shift from the viewer) still comes out right.
        pc.type(
            [
                KeyInput(keysym=name, down=down)
                for name in ("A", "exclam", "Return")
                for down in (True, False)
            ]
        )
        await until(lambda: typed.read_text() == "hello World!\nA!\n", "the shifted text")
        # Another command's nonce, another session: dropped.
        before = pc.live.dropped_input
        pc.type(keys("no\n"), nonce=OTHER_NONCE)
        pc.type(keys("no\n"), session="bb")
        assert pc.live.dropped_input == before + 12
        # A click where the viewer points on the half-size picture lands at twice that.
        target = spawn(
            [
                sys.executable,
                "-P",  # not this folder first on the path: its platform/ is no stdlib
                str(Path(__file__).with_name("click_target.py")),
                str(clicks),
                "0",
                "400",
                "1280",
                "400",
            ]
        )
        await until(lambda: clicks.exists() and "ready" in clicks.read_text(), "the click target")
        assert target.poll() is None
        pc.type(
            [
                PointerMove(monitor=1, x=300, y=251),
                ButtonInput(button=1, down=True),
                ButtonInput(button=1, down=False),
                PointerMove(monitor=1, x=10, y=260),
                ButtonInput(button=3, down=True),
                ButtonInput(button=3, down=False),
                WheelInput(dy=2),
                WheelInput(dx=-1),
            ]
        )
        await until(lambda: clicks.read_text().count("button") == 5, "clicks and wheel")
        await pc.live.stop_all("test over")
        await pc.live.settle()
        return outcome

    outcome = run(scenario)
    assert outcome.status == "done"
    assert outcome.reason.startswith("control granted until 20") and outcome.reason.endswith(" UTC")
    assert "to alice" in outcome.output
    assert clicks.read_text().splitlines()[1:] == [
        "button 1 600 502",
        "button 3 20 520",
        "button 5 20 520",  # wheel down, two steps
        "button 5 20 520",
        "button 6 20 520",  # wheel left
    ]
    assert typed.read_text() == "hello World!\nA!\n"  # nothing typed after
    assert pc.controls() == [
        ("aa", "granted", ""),
        ("aa", "ended", "the live-view session ended"),
    ]
    granted = next(m for m in pc.sent if isinstance(m, LiveControl))
    assert granted.until_us > now_us() + 50_000_000
    wait_for(lambda: not windows(desk, CONTROL_INDICATOR_TITLE), 10, "control bar removed", 0.1)
    events = [event for event, _ in pc.journal]
    assert events[0] == "remote_control.input_dropped"
    assert "remote_control.granted" in events and "remote_control.ended" in events


def test_escape_declines_and_nothing_is_injected(
    desk: Desktop, spawn: Spawn, tmp_path: Path
) -> None:
    typed = tmp_path / "typed.txt"
    typing_target(desk, spawn, typed)
    pc = PC(desk)

    async def scenario() -> Outcome:
        await pc.start()
        task = asyncio.create_task(remote_control(RemoteControlParams(), context(live=pc.live)))
        await answer(desk, "Escape")
        outcome = await task
        assert not windows(desk, CONTROL_INDICATOR_TITLE)
        pc.type(keys("x\n"))
        await asyncio.sleep(0.5)
        await pc.live.stop_all("test over")
        return outcome

    outcome = run(scenario)
    assert (outcome.status, outcome.reason) == ("failed", "declined")
    assert pc.live.controller is None and pc.live.injected_input == 0
    assert pc.live.dropped_input == 4
    assert pc.controls() == []
    assert not typed.exists() or typed.read_text() == ""


def test_expiry_releases_held_keys_and_later_input_is_dropped(
    desk: Desktop, spawn: Spawn, tmp_path: Path
) -> None:
    typed = tmp_path / "typed.txt"
    window = typing_target(desk, spawn, typed)
    pc = PC(desk)

    async def scenario() -> None:
        await pc.start()
        await pc.live.grant_control(NONCE, "alice", 1.5)
        await asyncio.to_thread(desk.focus, window)
        pc.type([KeyInput(keysym="Shift_L", down=True)])  # held, never released by the viewer
        await until(lambda: pressed(desk, "Shift_L"), "Shift held")
        await until(lambda: pc.live.controller is None, "the grant's end", timeout=5)
        await pc.live.settle()
        assert not pressed(desk, "Shift_L")
        pc.type(keys("late\n"))
        await asyncio.sleep(0.5)
        await pc.live.stop_all("test over")

    run(scenario)
    assert pc.controls() == [
        ("aa", "granted", ""),
        ("aa", "ended", "the maximum duration was reached"),
    ]
    assert pc.live.injected_input == 1
    assert not typed.exists() or typed.read_text() == ""
    assert not windows(desk, CONTROL_INDICATOR_TITLE)


def test_the_person_takes_control_back_by_clicking_the_bar(
    desk: Desktop, spawn: Spawn, tmp_path: Path
) -> None:
    typed = tmp_path / "typed.txt"
    window = typing_target(desk, spawn, typed)
    pc = PC(desk)

    async def scenario() -> None:
        await pc.start()
        await pc.live.grant_control(NONCE, "alice", 60)
        bar = int(windows(desk, CONTROL_INDICATOR_TITLE)[0])
        assert bar
        # The real mouse (xdotool, not the viewer) clicks the orange bar.
        await asyncio.to_thread(
            desk.xdotool, "mousemove", "640", str(BAR_HEIGHT + 10), "click", "1"
        )
        await until(lambda: pc.live.controller is None, "control taken back")
        await pc.live.settle()
        await asyncio.to_thread(desk.focus, window)
        pc.type(keys("after\n"))
        await asyncio.sleep(0.5)
        await pc.live.stop_all("test over")

    run(scenario)
    assert pc.controls() == [("aa", "granted", ""), ("aa", "ended", "the user took control back")]
    assert not typed.exists() or typed.read_text() == ""
    assert not windows(desk, CONTROL_INDICATOR_TITLE)


def test_a_grant_binds_to_the_users_session_input_comes_through_and_pause_ends_it(
    desk: Desktop, spawn: Spawn, tmp_path: Path
) -> None:
    typed = tmp_path / "typed.txt"
    window = typing_target(desk, spawn, typed)
    pc = PC(desk)

    async def scenario() -> None:
        await pc.live.grant_control(NONCE, "alice", 60)
        await pc.start("bb", viewer="bob")  # another viewer: not controlled
        await asyncio.to_thread(desk.focus, window)
        pc.type(keys("bob\n"), session="bb")
        await pc.live.stop_all("bob is done")
        await pc.start("cc", viewer="alice")
        assert pc.controls() == []  # bound by the first input of alice's session
        pc.type(keys("alice\n"), session="cc")
        await until(lambda: typed.exists() and typed.read_text() == "alice\n", "the text")
        await asyncio.to_thread(desk.xdotool, "key", "Pause")
        await until(lambda: pc.live.controller is None, "control taken back")
        await pc.live.stop_all("test over")
        await pc.live.settle()

    run(scenario)
    assert pc.controls() == [("cc", "granted", ""), ("cc", "ended", "the user took control back")]
    assert typed.read_text() == "alice\n"


def test_without_live_view_its_policy_or_a_screen_the_handler_fails_cleanly() -> None:
    async def scenario() -> tuple[Outcome, Outcome, Outcome]:
        none = await remote_control(RemoteControlParams(), context())
        off = LiveView(LiveViewPolicy, display=":999")  # the default policy: off
        refused = await remote_control(RemoteControlParams(), context(live=off))
        live = LiveView(lambda: LiveViewPolicy(mode="allowed"), display="otherhost:0")
        remote = await remote_control(RemoteControlParams(), context(live=live))
        return none, refused, remote

    none, refused, remote = run(scenario)
    assert (none.status, none.reason) == ("failed", "live view is not available on this agent")
    assert (refused.status, refused.reason) == (
        "failed",
        "live view is not allowed by this PC's policy",
    )
    assert remote.status == "failed" and remote.reason.startswith("no screen to control")
