"""The collector supervisor: isolation, restarts, health events, settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings
from sekimori.agent.collectors.supervisor import CollectorConfigError, Supervisor
from sekimori.agent.outbox import Outbox
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import AgentLog, CollectorHealth


class TickSettings(CollectorSettings):
    message: str = "tick"


class Ticker(Collector):
    """Emits one log event per interval until stopped."""

    name: ClassVar[str] = "ticker"
    settings_type: ClassVar[type[CollectorSettings]] = TickSettings

    def run(self, stop: threading.Event) -> None:
        assert isinstance(self.settings, TickSettings)
        while not stop.is_set():
            self.sink.emit(
                "agent.log", AgentLog(level="info", source="t", message=self.settings.message)
            )
            stop.wait(self.settings.interval_seconds)


class Crasher(Collector):
    """Fails on every start, like a collector with a bug."""

    name: ClassVar[str] = "crasher"
    starts: ClassVar[int] = 0

    def run(self, stop: threading.Event) -> None:
        type(self).starts += 1
        raise RuntimeError("boom")


class Unavailable(Collector):
    name: ClassVar[str] = "unavailable"

    def run(self, stop: threading.Event) -> None:
        raise CollectorError("no X display", permanent=True)


def _health(outbox: Outbox) -> list[CollectorHealth]:
    out = []
    for event in outbox.peek(0, max_events=10_000, max_bytes=1 << 30):
        if event.kind == "agent.collector_health":
            payload = decode_payload(event.kind, event.payload)
            assert isinstance(payload, CollectorHealth)
            out.append(payload)
    return out


def _wait(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_failing_collector_is_restarted_and_never_stops_the_others(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    Crasher.starts = 0
    supervisor = Supervisor(
        outbox,
        {"ticker": Ticker, "crasher": Crasher, "unavailable": Unavailable},
        {"ticker": {"interval_seconds": "0.05", "message": "alive"}},
        restart_initial_seconds=0.01,
        restart_max_seconds=0.05,
    )
    supervisor.start()
    try:
        _wait(lambda: Crasher.starts >= 3)
        ticks_before = outbox.stats().events
        _wait(lambda: outbox.stats().events > ticks_before + 5)
    finally:
        supervisor.stop()
    health = _health(outbox)
    failed = [h for h in health if h.collector == "crasher" and h.status == "failed"]
    assert len(failed) >= 3
    assert failed[0].reason == "RuntimeError: boom"
    assert [h.restarts for h in failed[:3]] == [1, 2, 3]
    unavailable = [h for h in health if h.collector == "unavailable"]
    assert [h.status for h in unavailable] == ["running", "unavailable"], "not restarted"
    assert unavailable[-1].reason == "no X display"
    messages = [
        decode_payload(e.kind, e.payload)
        for e in outbox.peek(0, max_events=10_000, max_bytes=1 << 30)
        if e.kind == "agent.log"
    ]
    assert messages and all(getattr(m, "message", None) == "alive" for m in messages)
    outbox.close()


def test_disabled_collectors_do_not_run(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    supervisor = Supervisor(outbox, {"ticker": Ticker}, {"ticker": {"enabled": "false"}})
    assert supervisor.enabled == []
    supervisor.start()
    supervisor.stop()
    assert [(h.collector, h.status) for h in _health(outbox)] == [("ticker", "disabled")]
    assert outbox.stats().events == 1, "no ticks, only the health record"
    outbox.close()


def test_bad_collector_settings_name_the_collector(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", max_bytes=1 << 30)
    with pytest.raises(CollectorConfigError, match="unknown collectors in settings"):
        Supervisor(outbox, {"ticker": Ticker}, {"tickr": {}})
    with pytest.raises(CollectorConfigError, match=r"collector 'ticker'.*interval_seconds"):
        Supervisor(outbox, {"ticker": Ticker}, {"ticker": {"interval_seconds": "soon"}})
    with pytest.raises(CollectorConfigError, match="collector 'ticker'"):
        Supervisor(outbox, {"ticker": Ticker}, {"ticker": {"colour": "red"}})
    outbox.close()


def test_the_file_collector_never_watches_the_agents_own_state(tmp_path: Path) -> None:
    from sekimori.agent.runtime import collector_settings
    from sekimori.settings import AgentSettings

    settings = AgentSettings(state_dir=str(tmp_path / "state"))
    assert collector_settings(settings)["files"]["state_dir"] == str(tmp_path / "state")
    chosen = AgentSettings(state_dir="x", collectors={"files": {"state_dir": "/elsewhere"}})
    assert collector_settings(chosen)["files"]["state_dir"] == "/elsewhere"
