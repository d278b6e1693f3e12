"""Raising real alerts for console and store tests: events stored and evaluated by the
ingest rules in one transaction, exactly as the ingest writer does (the built-in rule
pack decides what fires)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.events.device import UsbAttached
from sekimori.protocol.events.file import FileCopiedToRemovable
from sekimori.server.alerting.evaluator import IngestRules
from sekimori.server.event_fields import event_fields
from sekimori.server.store.events import EventRow, StoredBatch, write_batches
from sekimori.server.store.schema import alerts, devices
from tests.console.seed import SeedEvent

__all__ = ["alert_ids", "copied_to_usb", "ingest", "usb_stick"]

_json = msgspec.json.Encoder()


def copied_to_usb(path: str, os_user: str = "taro", time_us: int | None = None) -> SeedEvent:
    """A file written to a USB stick: the built-in rule raises a high alert."""
    return SeedEvent(
        "file.copied_to_removable",
        FileCopiedToRemovable(path=path, operation="created", size=1234),
        os_user,
        time_us,
    )


def usb_stick(os_user: str = "taro", time_us: int | None = None) -> SeedEvent:
    """A USB stick plugged in: the built-in rule raises a medium alert."""
    return SeedEvent(
        "device.usb_attached",
        UsbAttached(
            port="1-2",
            bus=1,
            address=7,
            vendor_id="0781",
            product_id="5581",
            interface_classes=["08"],
            manufacturer="SanDisk",
            product="Ultra",
            category="mass_storage",
        ),
        os_user,
        time_us,
    )


def ingest(engine: sa.Engine, device_id: str, items: Sequence[SeedEvent]) -> None:
    """Store ``items`` for the device and run the rules on them, in one transaction."""
    rules = IngestRules()
    now = now_us()
    with engine.begin() as conn:
        first = 1 + int(
            conn.execute(
                sa.select(devices.c.acked_seq).where(devices.c.id == device_id)
            ).scalar_one()
        )
        rows: list[EventRow] = []
        for offset, item in enumerate(items):
            tag, subject = event_fields(item.payload)
            rows.append(
                (
                    device_id,
                    first + offset,
                    item.time_us if item.time_us is not None else now + offset,
                    now,
                    item.kind,
                    item.os_user,
                    _json.encode(item.payload).decode("utf-8"),
                    tag,
                    subject,
                )
            )
        batch = StoredBatch(device_id=device_id, through_seq=first + len(rows) - 1, rows=rows)
        floors = write_batches(conn, [batch])
        rules.evaluate(conn, [batch], floors, now_us=now)


def alert_ids(engine: sa.Engine, device_id: str) -> list[int]:
    """The device's alert ids, oldest first."""
    with engine.connect() as conn:
        return [
            int(i)
            for i in conn.execute(
                sa.select(alerts.c.id).where(alerts.c.device_id == device_id).order_by(alerts.c.id)
            ).scalars()
        ]
