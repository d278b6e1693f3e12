"""Which devices a console user may see: every group, or a chosen few.

Every store query that returns devices or their events takes a ``Scope`` and applies
it in SQL, so a group-limited user cannot reach other groups' data by any URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sekimori.server.store.schema import devices

__all__ = ["EVERYTHING", "Scope"]


@dataclass(frozen=True, slots=True)
class Scope:
    all_groups: bool
    group_ids: frozenset[int] = frozenset()

    def device_filter(
        self, group_column: sa.ColumnElement[Any] = devices.c.group_id
    ) -> sa.ColumnElement[bool]:
        """A WHERE clause on a query that has the devices' group column."""
        if self.all_groups:
            return sa.true()
        if not self.group_ids:
            return sa.false()
        return group_column.in_(sorted(self.group_ids))

    def device_ids(self) -> sa.Select[tuple[str]]:
        """A subquery of the ids of the devices in scope (for event queries)."""
        return sa.select(devices.c.id).where(self.device_filter())

    def allows_group(self, group_id: int) -> bool:
        return self.all_groups or group_id in self.group_ids


EVERYTHING = Scope(all_groups=True)
