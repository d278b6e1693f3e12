"""screenshot and refresh_inventory through the executor with the runtime's own hooks
(``runtime._action_hooks``): a real outbox, a real collector supervisor, a real X
display (Xvfb). And the registry names a handler for every action."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from sekimori.agent.actions.executor import Executor
from sekimori.agent.actions.registry import HANDLERS, load_handler
from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.collectors.supervisor import Supervisor
from sekimori.agent.live import LiveView
from sekimori.agent.outbox import Outbox
from sekimori.agent.runtime import _action_hooks
from sekimori.protocol.actions import ACTION_NAMES, RefreshInventoryParams, ScreenshotParams
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.protocol.messages import Message
from sekimori.protocol.policy import LiveViewPolicy
from sekimori.settings import AgentSettings
from tests.agent.actions.test_executor import DEVICE, pin, request
from tests.desktop import Desktop, desktop_fixture  # noqa: F401 - the fixture


def test_every_action_has_a_handler() -> None:
    assert set(HANDLERS) == set(ACTION_NAMES)
    for action in ACTION_NAMES:
        assert load_handler(action) is not None, action


@pytest.fixture
def agent_parts(tmp_path: Path, desktop: Desktop) -> Iterator[tuple[Executor, Outbox]]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    pin(state)
    settings = AgentSettings(
        state_dir=str(state),
        collectors={
            **{name: {"enabled": False} for name in COLLECTORS},
            "screens": {
                "enabled": False,
                "display": desktop.display,
                "xauthority": str(desktop.xauthority),
            },
        },
    )
    outbox = Outbox(state / "outbox.db", max_bytes=64 * 1024 * 1024)
    supervisor = Supervisor(outbox, COLLECTORS, {name: {"enabled": False} for name in COLLECTORS})
    live = LiveView(LiveViewPolicy)
    hooks = _action_hooks(settings, supervisor, outbox, live, lambda: None)
    executor = Executor(state, DEVICE, record_event=outbox.append, hooks=hooks)
    try:
        yield executor, outbox
    finally:
        executor.close()
        outbox.close()


async def _ignore(message: Message) -> None:
    del message


def test_screenshot_now_works_with_the_screens_collector_off(
    agent_parts: tuple[Executor, Outbox],
) -> None:
    executor, outbox = agent_parts
    result = asyncio.run(executor.execute(request(ScreenshotParams(), by=()), _ignore))
    assert result.status == "done", result
    frames = [
        msgspec.msgpack.decode(e.payload, type=ScreenFrame)
        for e in outbox.peek(0, max_events=100, max_bytes=10**9)
        if e.kind == "screen.frame"
    ]
    assert len(frames) == 1
    (frame,) = frames
    assert frame.trigger == "action"
    assert frame.sha256 == hashlib.sha256(frame.image).hexdigest()
    assert (frame.screen_width, frame.screen_height) == (1280, 800)


def test_refresh_inventory_needs_the_inventory_collector(
    agent_parts: tuple[Executor, Outbox],
) -> None:
    executor, _ = agent_parts
    result = asyncio.run(executor.execute(request(RefreshInventoryParams(), by=()), _ignore))
    assert (result.status, result.reason) == (
        "failed",
        "the inventory collector is off on this PC",
    )
