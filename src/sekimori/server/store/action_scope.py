"""Which devices a console user may aim an action at: targets resolved within the
user's scope, in SQL (``Scope.device_filter``), and revoked devices left out.

A device of another group is reported exactly like one that does not exist, so the
action form cannot be used to probe for other groups' devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sekimori.server.store.schema import action_targets, devices, groups
from sekimori.server.store.scope import Scope

__all__ = [
    "MAX_TARGETS",
    "TargetDevice",
    "Targets",
    "hostnames_in_scope",
    "resolve_targets",
    "target_state_counts",
]

# The most devices one console action may target (the protocol allows more; a larger
# fleet action is better split by group).
MAX_TARGETS = 10_000


@dataclass(frozen=True, slots=True)
class TargetDevice:
    id: str
    hostname: str
    group: str


@dataclass(frozen=True, slots=True)
class Targets:
    devices: list[TargetDevice]
    # Names or ids given that match no device in scope (unknown, revoked, or of
    # another group: the same answer).
    unknown: list[str]
    # The group was named but lies outside the scope or does not exist.
    group_refused: bool = False


def _select() -> sa.Select[Any]:  # id, hostname, group name
    return (
        sa.select(devices.c.id, devices.c.hostname, groups.c.name)
        .join(groups, groups.c.id == devices.c.group_id)
        .where(devices.c.revoked_us.is_(None))
    )


def resolve_targets(
    engine: sa.Engine, scope: Scope, *, names: Sequence[str] = (), group: str = ""
) -> Targets:
    """Devices named (by id or exact host name) and every device of ``group``, all
    within ``scope``; at most ``MAX_TARGETS + 1`` (the caller refuses more)."""
    wanted = [n.strip() for n in names if n.strip()][: MAX_TARGETS + 1]
    found: dict[str, TargetDevice] = {}
    unknown: list[str] = []
    group_refused = False
    with engine.connect() as conn:
        if wanted:
            rows = conn.execute(
                _select().where(
                    scope.device_filter(),
                    sa.or_(devices.c.id.in_(wanted), devices.c.hostname.in_(wanted)),
                )
            ).all()
            matched: set[str] = set()
            for row in rows:
                device = TargetDevice(str(row[0]), str(row[1]), str(row[2]))
                found[device.id] = device
                matched.update((device.id, device.hostname))
            unknown = [n for n in wanted if n not in matched]
        if group:
            exists = conn.execute(
                sa.select(groups.c.id).where(
                    groups.c.name == group, scope.device_filter(groups.c.id)
                )
            ).first()
            if exists is None:
                group_refused = True
            else:
                rows = conn.execute(
                    _select()
                    .where(groups.c.name == group, scope.device_filter())
                    .order_by(devices.c.hostname)
                    .limit(MAX_TARGETS + 1)
                ).all()
                for row in rows:
                    found[str(row[0])] = TargetDevice(str(row[0]), str(row[1]), str(row[2]))
    ordered = sorted(found.values(), key=lambda d: (d.hostname, d.id))
    return Targets(devices=ordered, unknown=unknown, group_refused=group_refused)


def hostnames_in_scope(
    engine: sa.Engine, scope: Scope, device_ids: Sequence[str]
) -> dict[str, str]:
    """Host names of those of ``device_ids`` within ``scope`` (revoked ones too: a
    command's results stay readable after a PC is revoked)."""
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    out: dict[str, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                sa.select(devices.c.id, devices.c.hostname).where(
                    devices.c.id.in_(ids[start : start + 500]), scope.device_filter()
                )
            ).all()
            out.update({str(i): str(h) for i, h in rows})
    return out


def target_state_counts(
    engine: sa.Engine, scope: Scope, nonces: Sequence[str]
) -> dict[str, dict[str, int]]:
    """For each command, how many of its targets within ``scope`` are in each state
    (one grouped query for a page of commands)."""
    wanted = sorted(set(nonces))
    out: dict[str, dict[str, int]] = {n: {} for n in wanted}
    if not wanted:
        return out
    query = (
        sa.select(action_targets.c.nonce, action_targets.c.state, sa.func.count())
        .where(action_targets.c.nonce.in_(wanted))
        .group_by(action_targets.c.nonce, action_targets.c.state)
    )
    if not scope.all_groups:
        query = query.where(action_targets.c.device_id.in_(scope.device_ids()))
    with engine.connect() as conn:
        for nonce, state, count in conn.execute(query):
            out[str(nonce)][str(state)] = int(count)
    return out
