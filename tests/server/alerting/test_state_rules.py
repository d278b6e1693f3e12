"""State rules (agent offline, agent outdated) on SQLite and PostgreSQL: raised once
per episode and not again while open or after being resolved, not for revoked PCs,
switchable, and run by one replica at a time."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.alerting.state_rules import (
    AGENT_OFFLINE,
    AGENT_OUTDATED,
    STATE_RULES,
    StateRules,
    check_state_rules,
)
from sekimori.server.store.devices import revoke_device
from sekimori.server.store.rule_config import set_rule_enabled
from sekimori.server.store.schema import alerts, devices
from sekimori.settings import ServerSettings
from tests.console.seed import add_device
from tests.server.alerting.conftest import T0, Clock

HOUR = 3_600_000_000


@dataclass(frozen=True)
class _Alert:
    rule_id: str
    device_id: str
    key: str
    count: int
    status: str
    summary: str


def _alerts(engine: sa.Engine) -> list[_Alert]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                alerts.c.rule_id,
                alerts.c.device_id,
                alerts.c.key,
                alerts.c.count,
                alerts.c.status,
                alerts.c.summary,
            ).order_by(alerts.c.id)
        )
        return [_Alert(*row) for row in rows]


def _check(engine: sa.Engine, now: int, minimum: str = "") -> list[int]:
    return check_state_rules(
        engine, now_us=now, offline_hours=24, minimum_agent_version=minimum
    ).created


def _resolve_all(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(alerts).values(status="resolved", resolved_us=T0))


def test_offline_is_raised_once_per_absence(engine: sa.Engine) -> None:
    away = add_device(engine, "pc-away", last_seen_us=T0 - 25 * HOUR)
    # Connected: its last-seen time keeps moving (set ahead for the whole test).
    add_device(engine, "pc-here", last_seen_us=T0 + 100 * HOUR, connected=True)
    add_device(engine, "pc-recent", last_seen_us=T0 - 23 * HOUR)
    assert len(_check(engine, T0)) == 1
    [alert] = _alerts(engine)
    assert (alert.rule_id, alert.device_id, alert.count) == (AGENT_OFFLINE.id, away, 1)
    assert alert.summary.startswith("pc-away: no report since ")
    # Every minute after: the open alert is neither repeated nor grown.
    for minute in range(1, 4):
        assert _check(engine, T0 + minute * 60_000_000) == []
    assert [a.count for a in _alerts(engine)] == [1]
    # Resolved by an administrator while the PC is still away: not raised again.
    _resolve_all(engine)
    assert _check(engine, T0 + HOUR) == []
    # The PC comes back, then goes away again: a new absence, a new alert.
    with engine.begin() as conn:
        conn.execute(sa.update(devices).where(devices.c.id == away).values(last_seen_us=T0 + HOUR))
    [_recent] = _check(engine, T0 + 2 * HOUR)  # pc-recent is 25 hours away by now
    assert _check(engine, T0 + 2 * HOUR + 60_000_000) == []
    _check(engine, T0 + 25 * HOUR + 1)  # pc-away: 24 hours since it came back
    keyed = [(a.device_id, a.status) for a in _alerts(engine) if a.rule_id == AGENT_OFFLINE.id]
    assert keyed.count((away, "open")) == 1
    assert keyed.count((away, "resolved")) == 1


def test_a_pc_that_never_reported_counts_from_its_enrollment(engine: sa.Engine) -> None:
    add_device(engine, "pc-new", enrolled_us=T0 - 30 * HOUR)
    assert len(_check(engine, T0)) == 1


def test_revoked_devices_raise_nothing(engine: sa.Engine) -> None:
    device = add_device(engine, "pc-gone", last_seen_us=T0 - 48 * HOUR, agent_version="0.0.1")
    assert revoke_device(engine, device)
    assert _check(engine, T0, minimum="1.0") == []
    assert _alerts(engine) == []


def test_outdated_agents_below_the_minimum(engine: sa.Engine) -> None:
    old = add_device(engine, "pc-old", agent_version="0.9.1", last_seen_us=T0)
    add_device(engine, "pc-new", agent_version="0.10.0", last_seen_us=T0)
    add_device(engine, "pc-same", agent_version="v0.10", last_seen_us=T0)
    # No minimum set: the rule does not run.
    assert _check(engine, T0) == []
    assert len(_check(engine, T0, minimum="0.10.0")) == 1
    [alert] = _alerts(engine)
    assert (alert.rule_id, alert.device_id, alert.key) == (AGENT_OUTDATED.id, old, "0.9.1 < 0.10.0")
    assert alert.summary == "pc-old: agent 0.9.1, minimum 0.10.0"
    assert _check(engine, T0 + HOUR, minimum="0.10.0") == []
    # Updated, but still below a raised minimum: a new episode.
    with engine.begin() as conn:
        conn.execute(sa.update(devices).where(devices.c.id == old).values(agent_version="0.10.0"))
    assert _check(engine, T0 + HOUR, minimum="0.10.0") == []
    assert len(_check(engine, T0 + HOUR, minimum="0.11")) == 3


def test_rules_switched_off_raise_nothing(engine: sa.Engine) -> None:
    add_device(engine, "pc-old", agent_version="0.1", last_seen_us=T0 - 48 * HOUR)
    with engine.begin() as conn:
        set_rule_enabled(conn, AGENT_OFFLINE.id, False, actor="alice", now_us=T0)
    assert [a.rule_id for a in _alerts(engine)] == []
    _check(engine, T0, minimum="1.0")
    assert [a.rule_id for a in _alerts(engine)] == [AGENT_OUTDATED.id]
    with engine.begin() as conn:
        set_rule_enabled(conn, AGENT_OUTDATED.id, False, actor="alice", now_us=T0)
        set_rule_enabled(conn, AGENT_OFFLINE.id, True, actor="alice", now_us=T0)
    _check(engine, T0 + HOUR, minimum="2.0")
    assert [a.rule_id for a in _alerts(engine)] == [AGENT_OUTDATED.id, AGENT_OFFLINE.id]


def test_the_job_runs_on_one_replica_per_interval(engine: sa.Engine, clock: Clock) -> None:
    add_device(engine, "pc-away", last_seen_us=clock.now - 25 * HOUR)
    settings = ServerSettings(state_rules_seconds=60)
    first = StateRules(engine, settings, owner="a", clock=clock)
    second = StateRules(engine, settings, owner="b", clock=clock)
    ran = first.run_once()
    assert ran is not None and len(ran.created) == 1
    assert second.run_once() is None  # done a moment ago by the other replica
    clock.advance(59)
    assert first.run_once() is None
    clock.advance(1)
    ran = second.run_once()
    assert ran is not None and ran.created == []


def test_the_rules_the_console_lists() -> None:
    assert [rule.id for rule in STATE_RULES] == [
        "builtin.agent_offline",
        "builtin.agent_outdated",
        "builtin.known_exploited_vulnerability",  # raised by the vulnerability job
    ]
    assert all(rule.title and rule.description and rule.enabled for rule in STATE_RULES)
    assert {rule.severity for rule in STATE_RULES} <= {"info", "low", "medium", "high", "critical"}
