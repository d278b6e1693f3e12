"""Remote control in the server's live-view registry: input goes only to a running
session's PC, only if that agent speaks ``remote_control``; the PC's ``live_control``
reaches the viewer of its own session only. (With a real agent, X display and
console: tests/console/test_remote_control.py.)"""

from __future__ import annotations

import asyncio

import pytest

from sekimori.protocol.live_input import InputEvent, KeyInput
from sekimori.protocol.messages import LiveControl, LiveInput
from sekimori.server.live import LiveSessions, LiveUnavailable
from tests.server.test_live_sessions import _Channel

NONCE = "12" * 16
KEYS: list[InputEvent] = [KeyInput(keysym="a", down=True), KeyInput(keysym="a", down=False)]


def test_input_is_sent_to_the_sessions_pc_and_counted() -> None:
    async def scenario() -> None:
        channel = _Channel({"pc1": True})
        live = LiveSessions(channel.send, channel.capable, channel.capable)
        session = await live.open("pc1", "alice")
        await live.send_input(session, NONCE, KEYS)
        assert channel.sent[-1] == (
            "pc1",
            LiveInput(session_id=session.id, nonce=NONCE, events=KEYS),
        )
        assert session.input_events == 2
        await live.close(session)
        with pytest.raises(LiveUnavailable, match="has ended"):
            await live.send_input(session, NONCE, KEYS)
        assert session.input_events == 2

    asyncio.run(scenario())


def test_an_agent_without_remote_control_gets_no_input() -> None:
    async def scenario() -> None:
        channel = _Channel({"pc1": True})
        live = LiveSessions(channel.send, channel.capable)  # no control capability
        session = await live.open("pc1", "alice")
        sent = len(channel.sent)
        with pytest.raises(LiveUnavailable, match="too old for remote control"):
            await live.send_input(session, NONCE, KEYS)
        assert len(channel.sent) == sent

    asyncio.run(scenario())


def test_a_disconnected_pc_is_unavailable() -> None:
    async def scenario() -> None:
        channel = _Channel({"pc1": True})
        live = LiveSessions(channel.send, channel.capable, channel.capable)
        session = await live.open("pc1", "alice")
        del channel.devices["pc1"]
        with pytest.raises(LiveUnavailable):
            await live.send_input(session, NONCE, KEYS)

    asyncio.run(scenario())


def test_live_control_reaches_only_its_own_sessions_viewer() -> None:
    async def scenario() -> None:
        channel = _Channel({"pc1": True, "pc2": True})
        live = LiveSessions(channel.send, channel.capable, channel.capable)
        one = await live.open("pc1", "alice")
        granted = LiveControl(session_id=one.id, state="granted", until_us=5)
        live.deliver("pc2", granted)  # another PC naming this session: dropped
        assert one.control == ""
        live.deliver("pc1", granted)
        assert one.control == "granted"
        assert await one.next() == granted
        live.deliver("pc1", LiveControl(session_id=one.id, state="ended", reason="taken back"))
        assert one.control == "ended" and not one.ended  # the view goes on
        await live.close(one)

    asyncio.run(scenario())
