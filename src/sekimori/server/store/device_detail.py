"""One device's page: its newest inventory, its collectors' health, and its timeline.

Every query names the device and applies the user's scope in SQL as well (a device
outside the scope yields nothing, whatever id a URL carries). The newest event of a
kind is one probe of the (device_id, kind, time_us) index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from sekimori.server.store.event_queries import StoredEvent
from sekimori.server.store.schema import events
from sekimori.server.store.scope import Scope

__all__ = [
    "TIMELINE_PER_PAGE",
    "Timeline",
    "collector_health",
    "device_events",
    "newest_event",
    "timeline",
]

TIMELINE_PER_PAGE: Final = 50
HEALTH_KIND: Final = "agent.collector_health"


def _of_device(scope: Scope, device_id: str) -> list[sa.ColumnElement[bool]]:
    where = [events.c.device_id == device_id]
    if not scope.all_groups:
        where.append(events.c.device_id.in_(scope.device_ids()))
    return where


def _event(row: sa.Row[tuple[object, ...]]) -> StoredEvent:
    return StoredEvent(**row._asdict())


def newest_event(engine: sa.Engine, scope: Scope, device_id: str, kind: str) -> StoredEvent | None:
    """The device's newest event of ``kind`` (by event time)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(events)
            .where(*_of_device(scope, device_id), events.c.kind == kind)
            .order_by(events.c.time_us.desc(), events.c.seq.desc())
            .limit(1)
        ).first()
    return _event(row) if row else None


def device_events(
    engine: sa.Engine, scope: Scope, device_id: str, kinds: Sequence[str], limit: int = 50
) -> list[StoredEvent]:
    """The device's newest events of ``kinds``, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events)
            .where(*_of_device(scope, device_id), events.c.kind.in_(list(kinds)))
            .order_by(events.c.time_us.desc(), events.c.seq.desc())
            .limit(limit)
        ).all()
    return [_event(r) for r in rows]


def collector_health(
    engine: sa.Engine, scope: Scope, device_id: str, *, scan: int = 500
) -> list[StoredEvent]:
    """The newest health report of each collector (its ``tag``), by collector name.
    Looks at the newest ``scan`` reports: collectors are few and report on change."""
    newest: dict[str, StoredEvent] = {}
    for event in device_events(engine, scope, device_id, [HEALTH_KIND], limit=scan):
        newest.setdefault(event.tag or "", event)
    return [newest[name] for name in sorted(newest)]


@dataclass(frozen=True, slots=True)
class Timeline:
    events: list[StoredEvent]
    page: int
    has_next: bool


def timeline(
    engine: sa.Engine,
    scope: Scope,
    device_id: str,
    *,
    kind: str = "",
    page: int = 1,
    per_page: int = TIMELINE_PER_PAGE,
) -> Timeline:
    """A page of the device's events, newest first. ``kind``: one kind, or a domain
    ending in a dot ("web.", "file.")."""
    page = max(1, page)
    where = _of_device(scope, device_id)
    if kind.endswith("."):
        where.append(events.c.kind.startswith(kind, autoescape=True))
    elif kind:
        where.append(events.c.kind == kind)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events)
            .where(*where)
            .order_by(events.c.time_us.desc(), events.c.seq.desc())
            .limit(per_page + 1)
            .offset((page - 1) * per_page)
        ).all()
    return Timeline([_event(r) for r in rows[:per_page]], page, len(rows) > per_page)
