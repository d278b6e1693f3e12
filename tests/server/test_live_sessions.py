"""The server's live-view registry, on its own: what reaches a viewer and what not.
(End to end, with a real agent and X display: tests/console/test_live.py.)"""

from __future__ import annotations

import asyncio

import pytest

from sekimori.protocol import LiveFrame, LiveStart, LiveState, LiveStop
from sekimori.protocol.messages import Message
from sekimori.server.live import QUEUE_FRAMES, LiveSessions, LiveUnavailable


class _Channel:
    """Stands in for AgentChannel's two callbacks (connected devices and what was sent
    to them); the real channel is exercised by the end-to-end tests."""

    def __init__(self, devices: dict[str, bool]) -> None:
        self.devices = devices
        self.sent: list[tuple[str, Message]] = []

    async def send(self, device_id: str, message: Message) -> None:
        if device_id not in self.devices:
            raise LookupError(device_id)
        self.sent.append((device_id, message))

    def capable(self, device_id: str) -> bool | None:
        return self.devices.get(device_id)


def _frame(session_id: str, seq: int) -> LiveFrame:
    return LiveFrame(
        session_id=session_id,
        seq=seq,
        capture_us=seq,
        monitor=1,
        width=1,
        height=1,
        format="jpeg",
        image=b"x",
    )


def test_a_session_starts_the_agent_and_relays_its_answers() -> None:
    async def scenario() -> None:
        channel = _Channel({"pc1": True})
        live = LiveSessions(channel.send, channel.capable)
        session = await live.open("pc1", "alice", consent_required=True)
        device, start = channel.sent[0]
        assert device == "pc1" and isinstance(start, LiveStart)
        assert start.session_id == session.id and start.viewer == "alice"
        assert start.consent_required
        live.deliver("pc1", LiveState(session_id=session.id, state="started"))
        live.deliver("pc1", _frame(session.id, 1))
        assert await session.next() == LiveState(session_id=session.id, state="started")
        assert await session.next() == _frame(session.id, 1)
        assert session.started_us is not None and session.frames == 1
        await live.close(session, "bye")
        assert channel.sent[-1][1] == LiveStop(session_id=session.id, reason="bye")
        assert live.active == []

    asyncio.run(scenario())


def test_another_device_cannot_feed_a_session() -> None:
    async def scenario() -> None:
        channel = _Channel({"pc1": True, "pc2": True})
        live = LiveSessions(channel.send, channel.capable)
        session = await live.open("pc1", "alice")
        live.deliver("pc2", _frame(session.id, 1))
        live.deliver("pc1", _frame("00ff", 2))  # a session that does not exist
        assert session.frames == 0
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(session.next(), 0.05)

    asyncio.run(scenario())


def test_a_slow_viewer_gets_the_newest_frames() -> None:
    async def scenario() -> None:
        channel = _Channel({"pc1": True})
        live = LiveSessions(channel.send, channel.capable)
        session = await live.open("pc1", "alice")
        for seq in range(1, 11):
            live.deliver("pc1", _frame(session.id, seq))
        got = [await session.next() for _ in range(QUEUE_FRAMES)]
        assert [m.seq for m in got if isinstance(m, LiveFrame)] == [7, 8, 9, 10]
        assert session.dropped == 10 - QUEUE_FRAMES

    asyncio.run(scenario())


def test_a_device_that_leaves_ends_its_sessions() -> None:
    async def scenario() -> None:
        channel = _Channel({"pc1": True})
        live = LiveSessions(channel.send, channel.capable)
        session = await live.open("pc1", "alice")
        live.device_gone("pc1")
        assert await session.next() == LiveState(
            session_id=session.id, state="stopped", reason="the PC disconnected"
        )
        live.deliver("pc1", _frame(session.id, 1))  # too late
        assert session.frames == 0

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("devices", "reason"),
    [({}, "not connected"), ({"pc1": False}, "too old")],
)
def test_a_pc_that_cannot_be_watched_is_refused(devices: dict[str, bool], reason: str) -> None:
    async def scenario() -> None:
        channel = _Channel(devices)
        live = LiveSessions(channel.send, channel.capable)
        with pytest.raises(LiveUnavailable, match=reason):
            await live.open("pc1", "alice")
        assert channel.sent == [] and live.active == []

    asyncio.run(scenario())
