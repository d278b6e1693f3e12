"""Putting devices and events straight into a store for console tests (what enrolled
agents would have sent; the channel path itself is tested in tests/integration)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.events import Payload
from sekimori.server.event_fields import event_fields
from sekimori.server.store.events import EventRow, StoredBatch, write_batches
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import devices

__all__ = ["SeedEvent", "add_device", "add_events"]

_json = msgspec.json.Encoder()


def add_device(
    engine: sa.Engine,
    hostname: str,
    *,
    group: str = "default",
    os: str = "linux",
    os_version: str = "Debian GNU/Linux 12 (bookworm)",
    agent_version: str = "0.1.0",
    connected: bool = False,
    last_seen_us: int | None = None,
    enrolled_us: int | None = None,
    device_id: str | None = None,
) -> str:
    device_id = device_id or str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            sa.insert(devices).values(
                id=device_id,
                hostname=hostname,
                os=os,
                os_version=os_version,
                agent_version=agent_version,
                group_id=ensure_group(conn, group),
                cert_serial=uuid.uuid4().hex,
                enrolled_us=enrolled_us or now_us(),
                first_seen_us=last_seen_us,
                last_seen_us=last_seen_us,
                connected=connected,
                acked_seq=0,
                outbox_events=0,
                dropped_total=0,
            )
        )
    return device_id


@dataclass(frozen=True, slots=True)
class SeedEvent:
    kind: str
    payload: Payload
    os_user: str | None = None
    time_us: int | None = None


def add_events(engine: sa.Engine, device_id: str, items: Sequence[SeedEvent]) -> None:
    """Store events as the ingest path does (same JSON, same tag/subject)."""
    with engine.connect() as conn:
        first = (
            int(
                conn.execute(
                    sa.select(devices.c.acked_seq).where(devices.c.id == device_id)
                ).scalar_one()
            )
            + 1
        )
    now = now_us()
    rows: list[EventRow] = []
    for offset, item in enumerate(items):
        tag, subject = event_fields(item.payload)
        rows.append(
            (
                device_id,
                first + offset,
                item.time_us if item.time_us is not None else now,
                now,
                item.kind,
                item.os_user,
                _json.encode(item.payload).decode("utf-8"),
                tag,
                subject,
            )
        )
    batch = StoredBatch(device_id=device_id, through_seq=first + len(rows) - 1, rows=rows)
    with engine.begin() as conn:
        write_batches(conn, [batch])
