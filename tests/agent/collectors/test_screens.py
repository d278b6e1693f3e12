"""The screens collector against a real X desktop (Xvfb + openbox + xterm windows
focused through the window manager): frames on focus changes with the window's title,
on an interval, none for an unchanged screen, every monitor, the daily byte budget,
excluded applications, and a burst that includes frames from before it was asked.
The pictures are decoded and checked for the focused window's colour."""

from __future__ import annotations

import hashlib
import io
import os
import pwd
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from PIL import Image

from sekimori.agent.collectors.base import Sink
from sekimori.agent.collectors.registry import COLLECTORS
from sekimori.agent.collectors.screens import ScreensCollector, ScreensSettings
from sekimori.agent.outbox import Outbox
from sekimori.clock import now_us
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events.agent import AgentLog
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.protocol.policy import Policy, collector_overrides
from tests.agent.screens.monitors import split_monitors
from tests.agent.screens.test_capture import geometry, near
from tests.desktop import Desktop, XTerm, desktop_fixture  # noqa: F401
from tests.processes import wait_for

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WAIT = 15.0
ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    try:
        yield box
    finally:
        box.close()


def make(outbox: Outbox, desktop: Desktop, **settings: Any) -> ScreensCollector:
    settings = {
        "enabled": True,
        "display": desktop.display,
        "xauthority": str(desktop.xauthority),
        "scale": 0.5,
        "interval_seconds": 0,
        "burst_frames": 0,
        **settings,
    }
    return ScreensCollector(msgspec.convert(settings, ScreensSettings), Sink(outbox, "screens"))


@contextmanager
def running(collector: ScreensCollector) -> Iterator[None]:
    stop = threading.Event()
    raised: list[BaseException] = []

    def target() -> None:
        try:
            collector.run(stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=target, name="screens-collector-test")
    thread.start()
    try:
        assert collector.watching.wait(WAIT) or raised, "the collector did not start"
        yield
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the collector did not stop within 10 s"
    if raised:
        raise raised[0]


def frames(outbox: Outbox) -> list[tuple[int, str | None, ScreenFrame]]:
    out = []
    for e in outbox.peek(0, max_events=10_000, max_bytes=1 << 30):
        if e.kind == "screen.frame":
            payload = decode_payload(e.kind, e.payload)
            assert isinstance(payload, ScreenFrame)
            out.append((e.time_us, e.os_user, payload))
    return out


def logs(outbox: Outbox) -> list[AgentLog]:
    out = []
    for e in outbox.peek(0, max_events=10_000, max_bytes=1 << 30):
        if e.kind == "agent.log":
            payload = decode_payload(e.kind, e.payload)
            assert isinstance(payload, AgentLog)
            out.append(payload)
    return out


def wait_frames(outbox: Outbox, count: int) -> list[tuple[int, str | None, ScreenFrame]]:
    wait_for(lambda: len(frames(outbox)) >= count, WAIT, f"{count} frames", 0.05)
    return frames(outbox)


def colour_at(frame: ScreenFrame, x: int, y: int) -> tuple[int, ...]:
    """The colour of the decoded picture at screen coordinates (x, y)."""
    image = Image.open(io.BytesIO(frame.image))
    assert image.size == (frame.width, frame.height)
    scale = frame.width / frame.screen_width
    got = image.convert("RGB").getpixel((int(x * scale), int(y * scale)))
    assert isinstance(got, tuple)
    return got


def centre(desktop: Desktop, term: XTerm) -> tuple[int, int]:
    x, y, w, h = geometry(desktop, term.window)
    return x + w // 2, y + h // 2


def test_the_collector_is_off_by_default_and_registered() -> None:
    assert COLLECTORS["screens"] is ScreensCollector
    assert ScreensSettings().enabled is False
    assert (ScreensSettings().format, ScreensSettings().scale) == ("jpeg", 0.4)


def test_focus_changes_send_frames_of_the_focused_window(desktop: Desktop, outbox: Outbox) -> None:
    red = desktop.xterm("Budget 2027.ods", args=("-bg", "red", "-geometry", "120x40+20+20"))
    blue = desktop.xterm("Inbox - Mail", args=("-bg", "blue", "-geometry", "120x40+60+60"))
    desktop.focus(red.window)
    collector = make(outbox, desktop)
    with running(collector):
        first = wait_frames(outbox, 1)[-1][2]
        assert (first.trigger, first.title, first.application) == (
            "window_change",
            "Budget 2027.ods",
            "XTerm",
        )
        desktop.focus(blue.window)
        _, os_user, second = wait_frames(outbox, 2)[-1]
        assert (second.trigger, second.title, second.user, os_user) == (
            "window_change",
            "Inbox - Mail",
            ME,
            ME,
        )
        assert near(colour_at(second, *centre(desktop, blue)), BLUE)
        desktop.focus(red.window)
        third = wait_frames(outbox, 3)[-1][2]
        assert third.title == "Budget 2027.ods"
        assert near(colour_at(third, *centre(desktop, red)), RED)
    for _, _, frame in frames(outbox):
        assert frame.sha256 == hashlib.sha256(frame.image).hexdigest()
        assert (frame.monitor, frame.screen_width, frame.screen_height) == (0, 1280, 800)
        assert (frame.width, frame.height, frame.format) == (640, 400, "jpeg")
        assert Image.open(io.BytesIO(frame.image)).format == "JPEG"
    assert len(frames(outbox)) == 3
    assert collector.frames_sent == 3


def test_an_interval_frame_and_none_while_the_screen_is_unchanged(
    desktop: Desktop, outbox: Outbox
) -> None:
    term = desktop.xterm("idle", args=("-geometry", "80x20+10+10"))
    desktop.focus(term.window)
    time.sleep(0.5)  # painted
    collector = make(outbox, desktop, on_window_change=False, interval_seconds=0.2)
    with running(collector):
        assert wait_frames(outbox, 1)[0][2].trigger == "interval"
        time.sleep(2.0)  # ten more interval captures of the same screen
        assert len(frames(outbox)) == 1
        # Something else on the screen: the next interval sends it.
        big = desktop.xterm("report", args=("-bg", "blue", "-geometry", "140x45+100+60"))
        frame = wait_frames(outbox, 2)[-1][2]
        assert frame.trigger == "interval"
        assert near(colour_at(frame, *centre(desktop, big)), BLUE)


def test_every_monitor_is_captured(desktop: Desktop, outbox: Outbox) -> None:
    split_monitors(desktop.display, str(desktop.xauthority), [(0, 0, 640, 800), (640, 0, 640, 800)])
    term = desktop.xterm("right", args=("-bg", "blue", "-geometry", "40x10+700+100"))
    desktop.focus(term.window)
    with running(make(outbox, desktop, scale=1.0)):
        sent = wait_frames(outbox, 2)
    by_monitor = {f.monitor: f for _, _, f in sent}
    assert set(by_monitor) == {0, 1}
    for frame in by_monitor.values():
        assert (frame.screen_width, frame.screen_height, frame.width) == (640, 800, 640)
        assert frame.title == "right"
    x, y = centre(desktop, term)
    image = Image.open(io.BytesIO(by_monitor[1].image)).convert("RGB")
    got = image.getpixel((x - 640, y))
    assert isinstance(got, tuple)
    assert near(got, BLUE)


def test_the_daily_budget_stops_capture_and_says_so(desktop: Desktop, outbox: Outbox) -> None:
    a = desktop.xterm("a", args=("-bg", "red", "-geometry", "120x40+20+20"))
    b = desktop.xterm("b", args=("-bg", "blue", "-geometry", "120x40+60+60"))
    desktop.focus(a.window)
    # Room for one frame of this screen (a few KB), not for the next ones.
    with running(make(outbox, desktop)):
        one = wait_frames(outbox, 1)[0][2]
    budget = len(one.image) + 1000
    outbox2 = outbox  # the same outbox: the cursor holds what was sent today
    collector = make(outbox2, desktop, max_bytes_per_day=budget)
    with running(collector):
        desktop.focus(b.window)
        wait_for(lambda: logs(outbox) != [], WAIT, "the budget warning", 0.05)
        desktop.focus(a.window)
        time.sleep(1.5)
    assert len(frames(outbox)) == 1
    [log] = logs(outbox)
    assert log.level == "warning" and log.source == "collector.screens"
    assert f"daily screen budget of {budget} bytes reached" in log.message
    # A restart the same day neither captures nor repeats the warning.
    with running(make(outbox, desktop, max_bytes_per_day=budget)):
        desktop.focus(b.window)
        time.sleep(1.5)
    assert len(frames(outbox)) == 1
    assert len(logs(outbox)) == 1


def test_excluded_applications_are_never_captured(desktop: Desktop, outbox: Outbox) -> None:
    bank = desktop.xterm(
        "Bank", args=("-name", "banking", "-bg", "red", "-geometry", "120x40+20+20")
    )
    work = desktop.xterm("Work", args=("-bg", "blue", "-geometry", "120x40+60+60"))
    desktop.focus(bank.window)
    with running(make(outbox, desktop, exclude_applications=["Banking"], interval_seconds=0.3)):
        time.sleep(1.5)
        assert frames(outbox) == []
        desktop.focus(work.window)
        frame = wait_frames(outbox, 1)[0][2]
        assert frame.title == "Work"
        desktop.focus(bank.window)
        time.sleep(1.5)
    assert [f.title for _, _, f in frames(outbox)] == ["Work"]


def test_a_burst_sends_frames_from_before_it_and_after(desktop: Desktop, outbox: Outbox) -> None:
    term = desktop.xterm("before", args=("-bg", "red", "-geometry", "120x40+20+20"))
    desktop.focus(term.window)
    collector = make(outbox, desktop, on_window_change=False, burst_frames=3)
    with running(collector):
        time.sleep(0.5)  # first sample kept
        desktop.xterm("during", args=("-bg", "blue", "-geometry", "120x40+200+200"))
        time.sleep(2.5)  # second sample (the screen changed) kept
        assert frames(outbox) == []  # kept, not sent
        asked = now_us()
        collector.request_burst()
        sent = wait_frames(outbox, 3)
        time.sleep(3.5)  # the burst's remaining frames (unchanged: skipped)
    sent = frames(outbox)
    assert {f.trigger for _, _, f in sent} == {"rule"}
    before = [t for t, _, _ in sent if t < asked]
    assert len(before) == 2
    assert len(sent) == 3


def test_a_policy_leaves_screens_off_unless_it_turns_them_on() -> None:
    default = collector_overrides(Policy(), "screens")
    assert default == {"enabled": False}
    assert msgspec.convert(default, ScreensSettings).enabled is False
    policy = msgspec.convert(
        {
            "collectors": {"screens": {"enabled": True, "exclude_applications": ["keepassxc"]}},
            "excluded_applications": ["Banking", "keepassxc"],
        },
        Policy,
    )
    settings = msgspec.convert(collector_overrides(policy, "screens"), ScreensSettings)
    assert settings.enabled is True
    # An application the policy never records is never captured either.
    assert settings.exclude_applications == ["keepassxc", "Banking"]
    with pytest.raises(msgspec.ValidationError, match="scale"):
        msgspec.convert({"collectors": {"screens": {"scale": 1.5}}}, Policy)


def test_a_budget_spent_yesterday_does_not_stop_today(desktop: Desktop, outbox: Outbox) -> None:
    term = desktop.xterm("today", args=("-bg", "blue", "-geometry", "120x40+20+20"))
    desktop.focus(term.window)
    yesterday = (datetime.now().astimezone().date() - timedelta(days=1)).isoformat()
    spent = {"day": yesterday, "bytes": 10_000_000, "exhausted": True}
    outbox.save_cursor("collector.screens", msgspec.msgpack.encode(spent))
    with running(make(outbox, desktop, max_bytes_per_day=10_000_000)):
        frame = wait_frames(outbox, 1)[0][2]
    assert frame.title == "today"
    assert logs(outbox) == []
    saved = msgspec.msgpack.decode(outbox.cursor("collector.screens") or b"")
    assert saved == {
        "day": datetime.now().astimezone().date().isoformat(),
        "bytes": len(frame.image),
        "exhausted": False,
    }
