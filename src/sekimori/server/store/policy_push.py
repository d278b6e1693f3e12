"""The reads the agent channel needs to push collection policies to connected agents.

``newest_policy_versions`` is what the channel polls every second: one grouped scan of
the ``policies`` primary key (group_id, version), a row per group that has a policy.
The documents themselves are read (``store.policies.current_policy``) only for a
group whose newest version a connected agent does not run yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from sekimori.server.store.schema import devices, groups, policies

__all__ = ["device_groups", "newest_policy_versions"]


def newest_policy_versions(engine: sa.Engine) -> dict[int, int]:
    """``{group_id: newest version}`` for every group that has a saved policy."""
    query = sa.select(policies.c.group_id, sa.func.max(policies.c.version)).group_by(
        policies.c.group_id
    )
    with engine.connect() as conn:
        return {int(group_id): int(version) for group_id, version in conn.execute(query)}


def device_groups(engine: sa.Engine, device_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """``{device_id: (group_id, group name)}`` for those of ``device_ids`` that exist."""
    if not device_ids:
        return {}
    query = (
        sa.select(devices.c.id, groups.c.id, groups.c.name)
        .join(groups, groups.c.id == devices.c.group_id)
        .where(devices.c.id.in_(list(device_ids)))
    )
    with engine.connect() as conn:
        return {
            str(device_id): (int(group_id), str(name))
            for device_id, group_id, name in conn.execute(query)
        }
