"""The agent's live-view handler without a display: the policy refuses before anything
touches X; the display comes from the agent's settings. (With a real X display, server
and console: tests/console/test_live.py.)"""

from __future__ import annotations

import asyncio

from sekimori.agent.live import LiveView, display_settings
from sekimori.protocol import LiveStart, LiveState
from sekimori.protocol.messages import Message
from sekimori.protocol.policy import LiveViewPolicy


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
