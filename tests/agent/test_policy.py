"""The agent's policy handling without a network: the merge over local settings,
working hours, the kept copy, and applying (restarts, refusals, the notice)."""

from __future__ import annotations

import datetime as dt
import logging
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from sekimori.agent.collectors.base import Collector, CollectorSettings
from sekimori.agent.collectors.supervisor import Supervisor
from sekimori.agent.outbox import Outbox, PendingEvent
from sekimori.agent.policy import (
    NOTICE_FILE,
    POLICY_FILE,
    KeptPolicy,
    PolicyManager,
    WorkingHoursGate,
    effective_settings,
    load_kept_policy,
    save_kept_policy,
)
from sekimori.agent.runtime import collector_settings
from sekimori.protocol import encode_policy_document
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events import (
    AgentLog,
    CollectorHealth,
    NoticeUpdated,
    Payload,
    PolicyApplication,
)
from sekimori.protocol.policy import (
    COLLECTOR_NAMES,
    CollectorPolicies,
    FilesPolicy,
    NoticeMode,
    Policy,
    PrivacyPolicy,
    WebPolicy,
    WindowPolicy,
    WorkingHours,
)
from sekimori.settings import AgentSettings

TOKYO = dt.timezone(dt.timedelta(hours=9))


def _us(moment: str, tz: dt.tzinfo = dt.UTC) -> int:
    """``2024-07-01T08:30`` in ``tz``, as UTC microseconds."""
    return int(dt.datetime.fromisoformat(moment).replace(tzinfo=tz).timestamp() * 1_000_000)


# ---- the merge ------------------------------------------------------------------------


def test_the_policy_wins_where_it_speaks_and_the_local_settings_elsewhere() -> None:
    local: dict[str, dict[str, Any]] = {
        "files": {"paths": ["/home"], "coalesce_seconds": 2, "enabled": "false"},
        "window": {"display": ":1", "xauthority": "/run/x", "record_titles": True},
        "web": {"exclude_domains": ["intra.example"]},
    }
    policy = Policy(
        collectors=CollectorPolicies(
            files=FilesPolicy(paths=["/srv/share"]),
            window=WindowPolicy(idle_minutes=3),
            web=WebPolicy(enabled=False, mask_urls_to_domain=False),
        ),
        privacy=PrivacyPolicy(record_window_titles=False),
        excluded_applications=["keepassxc"],
    )
    merged = effective_settings(local, policy)
    # The policy's enabled wins over the local "false"; its paths replace the local ones.
    assert merged["files"] == {"paths": ["/srv/share"], "coalesce_seconds": 2, "enabled": True}
    # Machine-local fields stay; privacy folds into the collector it concerns.
    assert merged["window"] == {
        "display": ":1",
        "xauthority": "/run/x",
        "record_titles": False,
        "idle_minutes": 3,
        "enabled": True,
        "exclude_applications": ["keepassxc"],
    }
    # A collector the policy switches off keeps nothing else (not even imported).
    assert merged["web"] == {"enabled": False}
    assert merged["processes"] == {"enabled": True, "exclude_executables": ["*/keepassxc"]}
    assert set(merged) == set(COLLECTOR_NAMES)
    assert local["files"]["paths"] == ["/home"], "the local settings are not changed"


def test_no_policy_is_the_local_settings() -> None:
    local = {"files": {"enabled": False}}
    assert effective_settings(local, None) == local
    assert effective_settings(local, None) is not local


def test_the_file_collector_still_never_watches_the_agents_state(tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=str(tmp_path), collectors={"files": {"enabled": False}})
    on = Policy(collectors=CollectorPolicies(files=FilesPolicy(paths=["/srv"])))
    assert collector_settings(settings, on)["files"]["state_dir"] == str(tmp_path)
    off = Policy(collectors=CollectorPolicies(files=FilesPolicy(enabled=False, paths=["/srv"])))
    assert collector_settings(settings, off)["files"] == {"enabled": False}


# ---- working hours --------------------------------------------------------------------


def test_working_hours_on_weekdays_in_the_policys_time_zone() -> None:
    gate = WorkingHoursGate(
        WorkingHours(
            days=["mon", "tue", "wed", "thu", "fri"],
            start="08:30",
            end="18:00",
            timezone="Asia/Tokyo",
        )
    )
    # Monday 2024-07-01 in Tokyo.
    assert not gate(_us("2024-07-01T08:29:59", tz=TOKYO))
    assert gate(_us("2024-07-01T08:30:00", tz=TOKYO))
    assert gate(_us("2024-07-01T17:59:59", tz=TOKYO))
    assert not gate(_us("2024-07-01T18:00:00", tz=TOKYO))
    # 09:00 in Tokyo is 00:00 UTC: the policy's zone decides, not UTC.
    assert gate(_us("2024-07-01T00:00:00"))
    # Saturday.
    assert not gate(_us("2024-07-06T12:00:00", tz=TOKYO))


def test_a_night_shift_spans_midnight_and_belongs_to_the_day_it_starts() -> None:
    gate = WorkingHoursGate(WorkingHours(days=["fri"], start="22:00", end="06:00"))
    assert gate(_us("2024-07-05T23:00:00"))  # Friday night
    assert gate(_us("2024-07-06T05:59:00"))  # Saturday early morning: Friday's shift
    assert not gate(_us("2024-07-06T06:00:00"))
    assert not gate(_us("2024-07-06T23:00:00"))  # Saturday night: no shift
    assert not gate(_us("2024-07-05T05:00:00"))  # Friday early morning: Thursday's (none)


def test_until_midnight_and_no_hours() -> None:
    gate = WorkingHoursGate(WorkingHours(days=["sun"], start="20:00", end="24:00"))
    assert gate(_us("2024-07-07T23:59:59"))
    assert not gate(_us("2024-07-08T00:00:00"))
    gate.set(None)
    assert gate(_us("2024-07-08T00:00:00"))


# ---- the kept copy --------------------------------------------------------------------


def _kept(policy: Policy, version: int = 4) -> KeptPolicy:
    return KeptPolicy(
        group="sales",
        version=version,
        received_us=1,
        document=encode_policy_document(policy).decode(),
    )


def test_the_kept_policy_survives_and_a_corrupt_one_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_kept_policy(tmp_path) is None
    policy = Policy(collectors=CollectorPolicies(files=FilesPolicy(paths=["/srv"])))
    save_kept_policy(tmp_path, _kept(policy))
    loaded = load_kept_policy(tmp_path)
    assert loaded is not None and loaded[1] == policy and loaded[0].version == 4
    assert stat.S_IMODE((tmp_path / POLICY_FILE).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [POLICY_FILE], "no temporary file left"
    for corrupt in (
        b'{"group": "sales", "vers',
        b"[]",
        msgspec.json.encode(
            KeptPolicy(group="g", version=1, received_us=1, document='{"run": "sh"}')
        ),
    ):
        (tmp_path / POLICY_FILE).write_bytes(corrupt)
        with caplog.at_level(logging.WARNING):
            assert load_kept_policy(tmp_path) is None
        assert "ignoring the kept policy" in caplog.text
        caplog.clear()


# ---- applying -------------------------------------------------------------------------


class _Settings(CollectorSettings):
    label: str = ""


class Recorder(Collector):
    """Records one agent.log with its label at start, then waits; counts starts."""

    name: ClassVar[str] = "recorder"
    settings_type: ClassVar[type[CollectorSettings]] = _Settings
    starts: ClassVar[dict[str, int]] = {}

    def run(self, stop: threading.Event) -> None:
        assert isinstance(self.settings, _Settings)
        label = self.settings.label
        Recorder.starts[label] = Recorder.starts.get(label, 0) + 1
        self.sink.emit("agent.log", AgentLog(level="info", source="rec", message=label))
        stop.wait()


def _payloads(outbox: Outbox, kind: str) -> list[Payload]:
    return [
        decode_payload(e.kind, e.payload)
        for e in outbox.peek(0, max_events=100_000, max_bytes=1 << 30)
        if e.kind == kind
    ]


def _wait(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class Agent:
    """A PolicyManager and a Supervisor of two Recorders standing in for the file
    and web collectors: each one's settings are the merged section's paths/domains."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.outbox = Outbox(state_dir / "outbox.db", max_bytes=1 << 30)
        local: dict[str, dict[str, Any]] = {"files": {"paths": ["/home"]}, "web": {}}

        def settings_for(policy: Policy | None) -> dict[str, dict[str, Any]]:
            merged = effective_settings(local, policy)
            return {
                "files": {
                    "enabled": merged["files"].get("enabled", True),
                    "label": ",".join(merged["files"].get("paths", [])),
                },
                "web": {
                    "enabled": merged["web"].get("enabled", True),
                    "label": "web:" + ",".join(merged["web"].get("exclude_domains", [])),
                },
            }

        self.public_notice = state_dir / "public" / "notice.txt"
        self.manager = PolicyManager(
            state_dir,
            self.outbox,
            settings_for,
            notice_paths=[state_dir / NOTICE_FILE, self.public_notice],
        )
        self.supervisor = Supervisor(
            self.outbox,
            {"files": Recorder, "web": Recorder},
            self.manager.initial_settings(),
            gate=self.manager.gate,
        )
        self.supervisor.start()
        self.manager.start(self.supervisor)

    def close(self) -> None:
        self.supervisor.stop()
        self.outbox.close()


@pytest.fixture
def agent(tmp_path: Path) -> Any:
    Recorder.starts = {}
    agent = Agent(tmp_path)
    yield agent
    agent.close()


def _policy(**sections: Any) -> Policy:
    return Policy(collectors=CollectorPolicies(**sections))


def test_only_the_collectors_whose_settings_changed_restart(agent: Agent) -> None:
    _wait(lambda: Recorder.starts == {"/home": 1, "web:": 1})
    policy = _policy(files=FilesPolicy(paths=["/srv/share"]))
    answer = agent.manager.apply("sales", 1, encode_policy_document(policy))
    assert (answer.version, answer.ok, answer.error) == (1, True, "")
    _wait(lambda: Recorder.starts.get("/srv/share") == 1)
    assert Recorder.starts == {"/home": 1, "web:": 1, "/srv/share": 1}, "web not restarted"
    (applied,) = _payloads(agent.outbox, "agent.policy_applied")
    assert applied == PolicyApplication(group="sales", version=1, ok=True, restarted=["files"])
    # The same version again (a reconnect) changes nothing and records nothing.
    assert agent.manager.apply("sales", 1, encode_policy_document(policy)).ok
    assert len(_payloads(agent.outbox, "agent.policy_applied")) == 1
    # Switched off by the next version.
    off = _policy(files=FilesPolicy(enabled=False))
    assert agent.manager.apply("sales", 2, encode_policy_document(off)).ok
    health = [
        h
        for h in _payloads(agent.outbox, "agent.collector_health")
        if isinstance(h, CollectorHealth) and h.status == "disabled"
    ]
    assert [(h.collector, h.reason) for h in health] == [("files", "disabled by policy")]
    # Version 0 (the group's policy was never saved, or the device moved to such a
    # group): back to the local settings.
    assert agent.manager.apply("other", 0, encode_policy_document(Policy())).ok
    _wait(lambda: Recorder.starts.get("/home") == 2)


def test_a_bad_policy_is_refused_and_changes_nothing(agent: Agent) -> None:
    good = _policy(files=FilesPolicy(paths=["/srv"]))
    assert agent.manager.apply("sales", 1, encode_policy_document(good)).ok
    bad = encode_policy_document(good).replace(b'"paths":["/srv"]', b'"paths":"/srv"')
    answer = agent.manager.apply("sales", 2, bad)
    assert not answer.ok and answer.version == 2
    assert answer.error.startswith("collectors.files.paths: expected `array | null`")
    # Nothing changed: the kept policy is still version 1, the collectors run as before.
    loaded = load_kept_policy(agent.state_dir)
    assert loaded is not None and loaded[0].version == 1
    assert Recorder.starts.get("/srv") == 1
    # Refused once per document: a resend after a reconnect records no second event.
    assert not agent.manager.apply("sales", 2, bad).ok
    refused = [p for p in _payloads(agent.outbox, "agent.policy_applied") if not p.ok]  # type: ignore[attr-defined]
    assert len(refused) == 1


def test_settings_the_collectors_refuse_change_nothing(agent: Agent) -> None:
    # A typed-valid policy whose merged settings a collector refuses: the label of
    # the stand-in is a str, so a list of 2 000 paths still fits; an unknown time
    # zone does not get past the document check. Use the supervisor's own check: a
    # policy-settable field the stand-in does not know.
    class Strict(Recorder):
        settings_type: ClassVar[type[CollectorSettings]] = CollectorSettings

    strict = Supervisor(agent.outbox, {"files": Strict, "web": Strict}, {})
    manager = PolicyManager(
        agent.state_dir / "other",
        agent.outbox,
        lambda p: {"files": {"paths": ["/x"]}} if p else {},
        notice_paths=[],
    )
    (agent.state_dir / "other").mkdir()
    manager.start(strict)
    answer = manager.apply("g", 1, encode_policy_document(Policy()))
    assert not answer.ok and "collector 'files'" in answer.error
    assert load_kept_policy(agent.state_dir / "other") is None


def test_the_notice_is_written_for_the_user_and_withdrawn(agent: Agent) -> None:
    notice = NoticeMode(
        enabled=True,
        text_en="This PC records the applications you use.",
        text_ja="このPCは使用したアプリケーションを記録します。",
    )
    assert agent.manager.apply("sales", 1, encode_policy_document(Policy(notice_mode=notice))).ok
    for path in (agent.state_dir / NOTICE_FILE, agent.public_notice):
        text = path.read_text(encoding="utf-8")
        assert notice.text_en in text and notice.text_ja in text
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, "readable by the PC's user"
    (event,) = _payloads(agent.outbox, "agent.notice_updated")
    assert isinstance(event, NoticeUpdated)
    assert event.enabled and event.version == 1 and event.text_ja == notice.text_ja
    assert event.paths == [str(agent.state_dir / NOTICE_FILE), str(agent.public_notice)]
    # The same notice in a new version: no new event.
    same = Policy(notice_mode=notice, excluded_domains=["example.com"])
    assert agent.manager.apply("sales", 2, encode_policy_document(same)).ok
    assert len(_payloads(agent.outbox, "agent.notice_updated")) == 1
    # Turned off: the files go, and that is recorded too.
    assert agent.manager.apply("sales", 3, encode_policy_document(Policy())).ok
    assert not agent.public_notice.exists() and not (agent.state_dir / NOTICE_FILE).exists()
    last = _payloads(agent.outbox, "agent.notice_updated")[-1]
    assert isinstance(last, NoticeUpdated) and not last.enabled


def test_working_hours_drop_collector_events_but_keep_their_cursor(agent: Agent) -> None:
    _wait(lambda: len(_payloads(agent.outbox, "agent.log")) == 2)
    # Working hours that never include now: a window on one weekday that is not today.
    today = dt.datetime.now(dt.UTC).weekday()
    other = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(today + 3) % 7]
    hours = WorkingHours(days=[other], start="00:00", end="01:00")  # type: ignore[list-item]
    policy = Policy(
        collectors=CollectorPolicies(files=FilesPolicy(paths=["/night"])),
        privacy=PrivacyPolicy(working_hours_only=hours),
    )
    assert agent.manager.apply("sales", 1, encode_policy_document(policy)).ok
    _wait(lambda: Recorder.starts.get("/night") == 1)
    logs = [p.message for p in _payloads(agent.outbox, "agent.log")]  # type: ignore[attr-defined]
    assert "/night" not in logs, "the restarted collector's event was dropped"
    # Through the gated sink: the cursor is saved with nothing appended.
    sink = agent.supervisor._sink("files")
    before = agent.outbox.stats().events
    sink.emit_many(
        [PendingEvent("agent.log", AgentLog(level="info", source="x", message="m"))],
        cursor=b"42",
    )
    assert agent.outbox.stats().events == before
    assert sink.cursor() == b"42"
    # The agent's own events are not gated.
    assert _payloads(agent.outbox, "agent.policy_applied")
    # Hours lifted: collected again.
    assert agent.manager.apply("sales", 2, encode_policy_document(Policy())).ok
    sink.emit("agent.log", AgentLog(level="info", source="x", message="back"))
    assert "back" in [p.message for p in _payloads(agent.outbox, "agent.log")]  # type: ignore[attr-defined]


def test_a_restarted_agent_applies_the_kept_policy_at_once(tmp_path: Path) -> None:
    Recorder.starts = {}
    first = Agent(tmp_path)
    policy = _policy(files=FilesPolicy(paths=["/kept"]))
    assert first.manager.apply("sales", 7, encode_policy_document(policy)).ok
    first.close()
    Recorder.starts = {}
    second = Agent(tmp_path)
    try:
        _wait(lambda: Recorder.starts == {"/kept": 1, "web:": 1})
        stored = [
            p
            for p in _payloads(second.outbox, "agent.policy_applied")
            if isinstance(p, PolicyApplication) and p.source == "stored"
        ]
        assert [(p.group, p.version) for p in stored] == [("sales", 7)]
    finally:
        second.close()
