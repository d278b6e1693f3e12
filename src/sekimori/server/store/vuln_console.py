"""The vulnerability console's questions that store/vulns.py does not answer: the
fleet's agent versions (the agent half of the compliance page), the groups a user
may name in an exception, and the known-exploited findings no alert was raised for
yet (the ``builtin.known_exploited_vulnerability`` rule).

Scope is applied in SQL, as everywhere in the console.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.device_queries import version_key
from sekimori.server.store.schema import (
    alerts,
    devices,
    groups,
    vuln_exceptions,
    vuln_findings,
    vulnerabilities,
)
from sekimori.server.store.scope import Scope

__all__ = [
    "AgentVersions",
    "KevFinding",
    "OutdatedAgent",
    "agent_versions",
    "exception_groups",
    "unalerted_kev_findings",
]


@dataclass(frozen=True, slots=True)
class OutdatedAgent:
    device_id: str
    hostname: str
    group: str
    agent_version: str
    last_seen_us: int | None


@dataclass(frozen=True, slots=True)
class AgentVersions:
    """Every live PC's agent version in scope: counts per version (newest first),
    and the PCs below the minimum (lowest version first, at most ``limit``)."""

    counts: list[tuple[str, int]]
    outdated: list[OutdatedAgent]
    outdated_total: int

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


def agent_versions(
    engine: sa.Engine, scope: Scope, *, minimum: str, limit: int = 200
) -> AgentVersions:
    """Counts per agent version (one GROUP BY), then the outdated PCs of the few
    versions below ``minimum`` (no minimum: none is outdated)."""
    live = [devices.c.revoked_us.is_(None), scope.device_filter()]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(devices.c.agent_version, sa.func.count())
            .where(*live)
            .group_by(devices.c.agent_version)
        ).all()
        counts = sorted(
            ((str(v), int(n)) for v, n in rows), key=lambda r: version_key(r[0]), reverse=True
        )
        floor = version_key(minimum) if minimum else ()
        below = [v for v, _ in counts if minimum and version_key(v) < floor]
        outdated: list[OutdatedAgent] = []
        if below:
            found = conn.execute(
                sa.select(
                    devices.c.id,
                    devices.c.hostname,
                    groups.c.name,
                    devices.c.agent_version,
                    devices.c.last_seen_us,
                )
                .join(groups, groups.c.id == devices.c.group_id)
                .where(*live, devices.c.agent_version.in_(below))
                .order_by(devices.c.hostname, devices.c.id)
                .limit(limit)
            ).all()
            outdated = sorted(
                (OutdatedAgent(r[0], r[1], r[2], r[3], r[4]) for r in found),
                key=lambda a: (version_key(a.agent_version), a.hostname),
            )
    total = sum(n for v, n in counts if v in below)
    return AgentVersions(counts, outdated, total)


def exception_groups(engine: sa.Engine, scope: Scope) -> list[tuple[int, str]]:
    """The device groups (id, name) an exception may name for this user."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(groups.c.id, groups.c.name)
            .where(scope.device_filter(groups.c.id))
            .order_by(groups.c.name)
        ).all()
    return [(int(r[0]), str(r[1])) for r in rows]


@dataclass(frozen=True, slots=True)
class KevFinding:
    """A live device's open finding of a known-exploited vulnerability (one per
    device and vulnerability: the least package name stands for the others)."""

    device_id: str
    hostname: str
    vuln_id: str
    package: str
    installed_version: str
    fixed_version: str | None


def unalerted_kev_findings(conn: sa.Connection, rule_id: str, *, now_us: int) -> list[KevFinding]:
    """Open findings of known-exploited vulnerabilities on live devices that no
    unexpired exception covers and for which no alert of ``rule_id`` keyed by the
    vulnerability exists for the device (open, acknowledged or resolved)."""
    covered = (
        sa.select(sa.literal(1))
        .select_from(vuln_exceptions)
        .where(
            vuln_exceptions.c.vuln_id == vuln_findings.c.vuln_id,
            vuln_exceptions.c.expires_us > now_us,
            vuln_exceptions.c.created_us <= now_us,
            sa.or_(
                vuln_exceptions.c.package.is_(None),
                vuln_exceptions.c.package == vuln_findings.c.package,
            ),
            sa.or_(
                vuln_exceptions.c.device_id == vuln_findings.c.device_id,
                vuln_exceptions.c.group_id == devices.c.group_id,
            ),
        )
        .exists()
    )
    alerted = (
        sa.select(sa.literal(1))
        .select_from(alerts)
        .where(
            alerts.c.rule_id == rule_id,
            alerts.c.device_id == vuln_findings.c.device_id,
            alerts.c.key == vuln_findings.c.vuln_id,
        )
        .exists()
    )
    rows = conn.execute(
        sa.select(
            vuln_findings.c.device_id,
            devices.c.hostname,
            vuln_findings.c.vuln_id,
            vuln_findings.c.package,
            vuln_findings.c.installed_version,
            vuln_findings.c.fixed_version,
        )
        .select_from(
            vuln_findings.join(devices, devices.c.id == vuln_findings.c.device_id).join(
                vulnerabilities, vulnerabilities.c.id == vuln_findings.c.vuln_id
            )
        )
        .where(
            vulnerabilities.c.known_exploited.is_(True),
            vuln_findings.c.resolved_us.is_(None),
            devices.c.revoked_us.is_(None),
            ~covered,
            ~alerted,
        )
        .order_by(vuln_findings.c.device_id, vuln_findings.c.vuln_id, vuln_findings.c.package)
    ).all()
    found: dict[tuple[str, str], KevFinding] = {}
    for r in rows:
        found.setdefault(
            (r.device_id, r.vuln_id),
            KevFinding(
                r.device_id,
                r.hostname,
                r.vuln_id,
                r.package,
                r.installed_version,
                r.fixed_version,
            ),
        )
    return list(found.values())
