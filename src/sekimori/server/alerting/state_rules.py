"""State rules: alerts about a PC's state rather than an event — agent offline for too
long, agent older than the minimum version.

Checked every ``state_rules_seconds`` by one replica at a time (the ``state_rules``
job lease), through ``record_alert_matches`` like every other alert. Each raise is
tied to an *episode*, its key:

- ``builtin.agent_offline``: the device's last-seen time. One alert per absence; a
  PC that comes back and goes away again opens a new one.
- ``builtin.agent_outdated``: ``"<agent version> < <minimum>"``. One alert per
  version run below a minimum; an update to another outdated version or a higher
  minimum opens a new one.

An episode that has any alert already — open, acknowledged or resolved — is not
raised again: an open alert is not grown every minute (its count stays 1), and an
administrator who resolved it is not asked again while nothing changed. Revoked
devices are left out. Both rules are switched like the built-in pack
(``rule_settings``; absent means on). Alerts stay until an administrator resolves
them: a PC coming back does not resolve its offline alert by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import format_us, now_us
from sekimori.server.alerting.periodic import every
from sekimori.server.store.alerts import AlertMatch, RecordedAlerts, record_alert_matches
from sekimori.server.store.device_queries import version_key
from sekimori.server.store.jobs import acquire_lease, finish_lease
from sekimori.server.store.rule_config import load_rule_config
from sekimori.server.store.schema import alerts, devices
from sekimori.settings import ServerSettings

__all__ = [
    "AGENT_OFFLINE",
    "AGENT_OUTDATED",
    "JOB_NAME",
    "KNOWN_EXPLOITED_VULNERABILITY",
    "STATE_RULES",
    "StateRule",
    "StateRules",
    "check_state_rules",
]

log = logging.getLogger(__name__)

JOB_NAME = "state_rules"
_US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True, slots=True)
class StateRule:
    """A state rule as the console lists it next to the built-in pack."""

    id: str
    title: str
    description: str
    severity: str
    enabled: bool = True  # the default, when rule_settings has no row for it


AGENT_OFFLINE = StateRule(
    id="builtin.agent_offline",
    title="Agent offline",
    description=(
        "The PC's agent has not reported for longer than agent_offline_hours "
        "(24 by default): the PC is off, disconnected, or its agent was stopped."
    ),
    severity="medium",
)
AGENT_OUTDATED = StateRule(
    id="builtin.agent_outdated",
    title="Agent older than the minimum version",
    description=(
        "The PC runs an agent below minimum_agent_version (checked only when that "
        "setting is given): it may lack security fixes."
    ),
    severity="high",
)
# Raised by the vulnerability job, not by this module's check (alerting/known_exploited.py):
# one alert per (device, vulnerability), switched here like the others.
KNOWN_EXPLOITED_VULNERABILITY = StateRule(
    id="builtin.known_exploited_vulnerability",
    title="Known-exploited vulnerability on a PC",
    description=(
        "A PC has a vulnerability listed in the CISA Known Exploited Vulnerabilities "
        "catalog (exploited in the wild): patch it first. One alert per PC and "
        "vulnerability; an accepted finding (exception) raises none."
    ),
    severity="critical",
)
STATE_RULES: tuple[StateRule, ...] = (AGENT_OFFLINE, AGENT_OUTDATED, KNOWN_EXPLOITED_VULNERABILITY)


def _episodes_seen(conn: sa.Connection, rule_id: str) -> set[tuple[str, str]]:
    """(device, key) of every alert of ``rule_id``, whatever its status."""
    rows = conn.execute(
        sa.select(alerts.c.device_id, alerts.c.key).where(alerts.c.rule_id == rule_id)
    )
    return {(str(r.device_id), str(r.key)) for r in rows}


def _offline_matches(conn: sa.Connection, now: int, hours: float) -> list[AlertMatch]:
    cutoff = now - int(hours * _US_PER_HOUR)
    # last_seen is refreshed for connected devices every few seconds, so an old one
    # means offline even if a crashed replica left ``connected`` set.
    seen = sa.func.coalesce(devices.c.last_seen_us, devices.c.enrolled_us)
    rows = conn.execute(
        sa.select(devices.c.id, devices.c.hostname, seen.label("seen")).where(
            devices.c.revoked_us.is_(None), seen < cutoff
        )
    )
    done = _episodes_seen(conn, AGENT_OFFLINE.id)
    matches = []
    for row in rows:
        key = str(int(row.seen))
        if (str(row.id), key) in done:
            continue
        matches.append(
            AlertMatch(
                rule_id=AGENT_OFFLINE.id,
                title=AGENT_OFFLINE.title,
                severity=AGENT_OFFLINE.severity,
                device_id=str(row.id),
                key=key,
                time_us=now,
                summary=f"{row.hostname}: no report since {format_us(int(row.seen))}",
            )
        )
    return matches


def _outdated_matches(conn: sa.Connection, now: int, minimum: str) -> list[AlertMatch]:
    floor = version_key(minimum)
    rows = conn.execute(
        sa.select(devices.c.id, devices.c.hostname, devices.c.agent_version).where(
            devices.c.revoked_us.is_(None)
        )
    )
    done = _episodes_seen(conn, AGENT_OUTDATED.id)
    matches = []
    for row in rows:
        version = str(row.agent_version)
        if version_key(version) >= floor:
            continue
        key = f"{version} < {minimum}"
        if (str(row.id), key) in done:
            continue
        matches.append(
            AlertMatch(
                rule_id=AGENT_OUTDATED.id,
                title=AGENT_OUTDATED.title,
                severity=AGENT_OUTDATED.severity,
                device_id=str(row.id),
                key=key,
                time_us=now,
                summary=f"{row.hostname}: agent {version}, minimum {minimum}",
            )
        )
    return matches


def check_state_rules(
    engine: sa.Engine,
    *,
    now_us: int,
    offline_hours: float,
    minimum_agent_version: str,
) -> RecordedAlerts:
    """Raise the state alerts due now (one transaction). Returns the alerts opened
    (``grown`` stays empty unless two checks raced, which the job lease prevents)."""
    with engine.begin() as conn:
        enabled = load_rule_config(conn).enabled
        matches: list[AlertMatch] = []
        if enabled.get(AGENT_OFFLINE.id, AGENT_OFFLINE.enabled):
            matches += _offline_matches(conn, now_us, offline_hours)
        if minimum_agent_version and enabled.get(AGENT_OUTDATED.id, AGENT_OUTDATED.enabled):
            matches += _outdated_matches(conn, now_us, minimum_agent_version)
        return record_alert_matches(conn, matches, now_us=now_us)


class StateRules:
    """The periodic job: ``run_once`` (blocking) runs the check when it is due and this
    replica gets the lease; ``run`` loops it off the event loop."""

    def __init__(
        self,
        engine: sa.Engine,
        server: ServerSettings,
        *,
        owner: str,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.engine = engine
        self.interval_us = int(server.state_rules_seconds * 1_000_000)
        self.offline_hours = server.agent_offline_hours
        self.minimum = server.minimum_agent_version
        self.owner = owner
        self.clock = clock

    def run_once(self) -> RecordedAlerts | None:
        """The alerts raised, or None when not due or another replica runs it."""
        now = self.clock()
        lease = acquire_lease(
            self.engine,
            JOB_NAME,
            self.owner,
            now_us=now,
            lease_us=max(self.interval_us, 60_000_000),
            due_before_us=now - self.interval_us,
        )
        if lease is None:
            return None
        recorded = check_state_rules(
            self.engine,
            now_us=now,
            offline_hours=self.offline_hours,
            minimum_agent_version=self.minimum,
        )
        finish_lease(self.engine, lease, finished_us=now)
        if recorded.created:
            log.info("state rules: %d alerts raised", len(recorded.created))
        return recorded

    async def run(self, stop: asyncio.Event) -> None:
        await every(stop, self.interval_us / 1_000_000, self.run_once, "state rules")
