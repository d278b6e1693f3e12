"""Reading events back: the newest events of a device, optionally by kind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.schema import events

__all__ = ["StoredEvent", "recent_events"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    device_id: str
    seq: int
    time_us: int
    received_us: int
    kind: str
    os_user: str | None
    payload: str
    tag: str | None = None
    subject: str | None = None


def recent_events(
    engine: sa.Engine,
    *,
    device_id: str,
    since_us: int,
    kinds: Sequence[str] = (),
    limit: int = 200,
) -> list[StoredEvent]:
    """Events of ``device_id`` at or after ``since_us`` (agent time), oldest first,
    at most ``limit`` (the newest ones when there are more)."""
    query = (
        sa.select(events)
        .where(events.c.device_id == device_id, events.c.time_us >= since_us)
        .order_by(events.c.time_us.desc(), events.c.seq.desc())
        .limit(limit)
    )
    if kinds:
        query = query.where(events.c.kind.in_(list(kinds)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [StoredEvent(**row._asdict()) for row in reversed(rows)]
