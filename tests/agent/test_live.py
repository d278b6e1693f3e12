"""The agent's live-view handler without a display: the policy refuses before anything
touches X; the display comes from the agent's settings. On a real X display (Xvfb):
the maximum duration, live_stop, one session at a time. (With the server and the
console: tests/console/test_live.py.)"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

from sekimori.agent.indicator import INDICATOR_TITLE
from sekimori.agent.live import LiveView, display_settings
from sekimori.protocol import LiveFrame, LiveStart, LiveState, LiveStop
from sekimori.protocol.messages import Message
from sekimori.protocol.policy import LiveViewPolicy
from tests.desktop import Desktop, desktop_fixture  # noqa: F401 - the fixture


def test_policy_off_refuses_without_touching_the_screen() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def scenario() -> None:
        live = LiveView(LiveViewPolicy, display=":999")
        live.start(LiveStart(session_id="ab", viewer="alice"), send)
        assert live.active == "ab"
        await live.stop_all("test over")
        assert live.active is None

    asyncio.run(scenario())
    assert sent == [
        LiveState(
            session_id="ab", state="refused", reason="live view is not allowed by this PC's policy"
        )
    ]


def test_a_missing_display_is_a_refusal_not_a_crash() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def scenario() -> None:
        live = LiveView(lambda: LiveViewPolicy(mode="allowed"), display="otherhost:0")
        live.start(LiveStart(session_id="cd", viewer="alice"), send)
        await live.stop_all("test over")

    asyncio.run(scenario())
    assert len(sent) == 1 and isinstance(sent[0], LiveState)
    assert sent[0].state == "refused" and sent[0].reason.startswith("no screen to show")


def test_the_display_comes_from_the_screens_then_the_window_settings() -> None:
    assert display_settings({}) == ("", "")
    window = {"window": {"display": ":1", "xauthority": "/run/x/cookie"}}
    assert display_settings(window) == (":1", "/run/x/cookie")
    both = {"screens": {"display": ":2"}, **window}
    assert display_settings(both) == (":2", "")


def _collect(
    desktop: Desktop,
    starts: list[LiveStart],
    stop_after: float | None,
    policy: Callable[[], LiveViewPolicy] = lambda: LiveViewPolicy(mode="allowed"),
) -> list[Message]:
    """Run LiveView on the real display for ``starts``; with ``stop_after``, send
    ``live_stop`` for the first one then. Returns every message it sent, in order."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def scenario() -> None:
        live = LiveView(
            policy,
            display=desktop.display,
            xauthority=str(desktop.xauthority),
        )
        for start in starts:
            live.start(start, send)
        if stop_after is not None:
            await asyncio.sleep(stop_after)
            live.stop(LiveStop(session_id=starts[0].session_id, reason="enough"))
        deadline = time.monotonic() + 15
        while live.active is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await live.stop_all("test over")

    asyncio.run(scenario())
    return sent


def _states(sent: list[Message]) -> list[tuple[str, str, str]]:
    return [(m.session_id, m.state, m.reason) for m in sent if isinstance(m, LiveState)]


def test_a_session_ends_by_itself_after_its_maximum_duration(desktop: Desktop) -> None:
    started = time.monotonic()
    sent = _collect(
        desktop, [LiveStart(session_id="aa", viewer="alice", max_fps=5, max_seconds=2)], None
    )
    assert 2 <= time.monotonic() - started < 10
    assert _states(sent) == [
        ("aa", "started", ""),
        ("aa", "stopped", "the maximum duration was reached"),
    ]
    frames = [m for m in sent if isinstance(m, LiveFrame)]
    assert 6 <= len(frames) <= 12  # 5 a second for 2 seconds
    assert [f.seq for f in frames] == list(range(1, len(frames) + 1))
    assert not _indicators(desktop)


def test_live_stop_ends_it_and_a_second_request_meanwhile_is_refused(desktop: Desktop) -> None:
    sent = _collect(
        desktop,
        [
            LiveStart(session_id="bb", viewer="alice", max_fps=4),
            LiveStart(session_id="cc", viewer="bob"),
        ],
        stop_after=1.5,
    )
    assert _states(sent) == [
        ("cc", "refused", "another live-view session is running on this PC"),
        ("bb", "started", ""),
        ("bb", "stopped", "enough"),
    ]
    assert all(m.session_id == "bb" for m in sent if isinstance(m, LiveFrame))
    assert not _indicators(desktop)


def _indicators(desktop: Desktop) -> list[str]:
    done = subprocess.run(
        ["xdotool", "search", "--name", f"^{INDICATOR_TITLE}$"],
        env=desktop.env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.split()


def test_a_policy_that_switches_live_view_off_ends_the_session(desktop: Desktop) -> None:
    switched = time.monotonic() + 1.0

    def policy() -> LiveViewPolicy:
        return LiveViewPolicy(mode="allowed" if time.monotonic() < switched else "off")

    sent = _collect(desktop, [LiveStart(session_id="dd", viewer="alice")], None, policy)
    assert _states(sent) == [
        ("dd", "started", ""),
        ("dd", "stopped", "live view was switched off by the PC's policy"),
    ]
    assert not _indicators(desktop)
