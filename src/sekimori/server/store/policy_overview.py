"""What the console's policy pages read besides the versions themselves: the device
groups a user may edit with their current version, and the devices of a group that
do not run it yet.

Both apply the user's scope in SQL (``Scope.device_filter``), so a group-limited
administrator neither sees nor reaches another group's policy or devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.schema import device_policy, devices, groups, policies
from sekimori.server.store.scope import Scope

__all__ = ["GroupPolicy", "PolicyDevice", "devices_behind", "group_policies"]


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """A device group and its current policy version (``version`` None: the group
    never had a policy, its agents collect as their own settings say)."""

    group_id: int
    name: str
    version: int | None
    created_us: int | None
    created_by: str | None


@dataclass(frozen=True, slots=True)
class PolicyDevice:
    """A device and the policy version it last reported (None: not yet reported for
    its current group)."""

    device_id: str
    hostname: str
    version: int | None
    reported_us: int | None


def group_policies(
    engine: sa.Engine, scope: Scope, *, group_id: int | None = None
) -> list[GroupPolicy]:
    """Every group in ``scope`` (only ``group_id`` when given) with its current
    version, by name."""
    newest = (
        sa.select(policies.c.group_id, sa.func.max(policies.c.version).label("version"))
        .group_by(policies.c.group_id)
        .subquery()
    )
    current = (
        sa.select(
            policies.c.group_id, policies.c.version, policies.c.created_us, policies.c.created_by
        )
        .join(
            newest,
            sa.and_(
                newest.c.group_id == policies.c.group_id, newest.c.version == policies.c.version
            ),
        )
        .subquery()
    )
    query = (
        sa.select(
            groups.c.id,
            groups.c.name,
            current.c.version,
            current.c.created_us,
            current.c.created_by,
        )
        .select_from(groups.outerjoin(current, current.c.group_id == groups.c.id))
        .where(scope.device_filter(groups.c.id))
        .order_by(groups.c.name)
    )
    if group_id is not None:
        query = query.where(groups.c.id == group_id)
    with engine.connect() as conn:
        return [
            GroupPolicy(
                group_id=int(row.id),
                name=str(row.name),
                version=None if row.version is None else int(row.version),
                created_us=None if row.created_us is None else int(row.created_us),
                created_by=None if row.created_by is None else str(row.created_by),
            )
            for row in conn.execute(query)
        ]


def devices_behind(
    engine: sa.Engine, scope: Scope, group_id: int, current: int, *, limit: int = 200
) -> list[PolicyDevice]:
    """Up to ``limit`` devices of the group (in ``scope``, not revoked) that do not
    report version ``current``: those that never reported first, then by version and
    host name. A version reported under another group (the device moved) counts as
    not reported, as in ``devices_by_policy_version``."""
    applied = sa.case(
        (device_policy.c.group_id == devices.c.group_id, device_policy.c.version),
        else_=sa.null(),
    )
    reported = sa.case(
        (device_policy.c.group_id == devices.c.group_id, device_policy.c.reported_us),
        else_=sa.null(),
    )
    query = (
        sa.select(
            devices.c.id,
            devices.c.hostname,
            applied.label("version"),
            reported.label("reported_us"),
        )
        .select_from(devices.outerjoin(device_policy, device_policy.c.device_id == devices.c.id))
        .where(
            devices.c.group_id == group_id,
            devices.c.revoked_us.is_(None),
            scope.device_filter(),
            sa.or_(applied.is_(None), applied != current),
        )
        .order_by(applied.is_not(None), applied, devices.c.hostname)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            PolicyDevice(
                device_id=str(row.id),
                hostname=str(row.hostname),
                version=None if row.version is None else int(row.version),
                reported_us=None if row.reported_us is None else int(row.reported_us),
            )
            for row in conn.execute(query)
        ]
