"""The removable-media and USB device reports."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.event_search import EventCriteria, hostnames
from sekimori.server.store.reports._common import (
    ROWS,
    _dialect,
    _kind,
    json_int,
    json_text,
)
from sekimori.server.store.schema import events
from sekimori.server.store.scope import Scope

__all__ = [
    "RemovableCopy",
    "RemovableReport",
    "RemovableTotal",
    "UsbReport",
    "UsbSighting",
    "removable_report",
    "usb_report",
]

# -- removable media -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemovableTotal:
    device_id: str
    hostname: str
    user: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RemovableCopy:
    time_us: int
    device_id: str
    hostname: str
    user: str
    path: str
    size: int | None
    medium: str


@dataclass(frozen=True, slots=True)
class RemovableReport:
    totals: list[RemovableTotal]
    copies: list[RemovableCopy]  # newest first
    files: int
    bytes: int


def removable_report(engine: sa.Engine, scope: Scope, criteria: EventCriteria) -> RemovableReport:
    """File copies to removable media: per PC and user, the latest copies, and the
    totals over everything in scope."""
    dialect = _dialect(engine)
    where = _kind(scope, criteria, "file.copied_to_removable")
    size = json_int(dialect, events.c.payload, "size")
    user = sa.func.coalesce(events.c.os_user, "").label("user")
    files = sa.func.count().label("files")
    total = sa.func.coalesce(sa.func.sum(size), 0).label("bytes")
    with engine.connect() as conn:
        per = conn.execute(
            sa.select(events.c.device_id, user, files, total)
            .where(*where)
            .group_by(events.c.device_id, user)
            .order_by(total.desc(), files.desc(), events.c.device_id, user)
            .limit(ROWS)
        ).all()
        latest = conn.execute(
            sa.select(
                events.c.time_us,
                events.c.device_id,
                user,
                events.c.subject,
                size.label("size"),
                events.c.tag,
            )
            .where(*where)
            .order_by(events.c.time_us.desc(), events.c.seq.desc())
            .limit(ROWS)
        ).all()
        overall = conn.execute(sa.select(files, total).where(*where)).one()
        names = hostnames(conn, [r.device_id for r in per] + [r.device_id for r in latest])
    return RemovableReport(
        totals=[
            RemovableTotal(
                r.device_id, names.get(r.device_id, r.device_id), r.user, r.files, int(r.bytes)
            )
            for r in per
        ],
        copies=[
            RemovableCopy(
                r.time_us,
                r.device_id,
                names.get(r.device_id, r.device_id),
                r.user,
                r.subject or "",
                None if r.size is None else int(r.size),
                r.tag or "",
            )
            for r in latest
        ],
        files=int(overall.files),
        bytes=int(overall.bytes),
    )


# -- USB devices -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsbSighting:
    ids: str  # vendor:product
    serial: str
    name: str  # manufacturer and product as the device names itself
    category: str
    attachments: int
    pcs: int
    last_us: int
    device_id: str = ""
    hostname: str = ""
    user: str = ""

    @property
    def mass_storage(self) -> bool:
        return self.category == "mass_storage"


@dataclass(frozen=True, slots=True)
class UsbReport:
    devices: list[UsbSighting]  # one row per USB device (ids and serial)
    per_pc: list[UsbSighting]  # one row per USB device, PC and user


def usb_report(engine: sa.Engine, scope: Scope, criteria: EventCriteria) -> UsbReport:
    """USB devices attached in the range: per device (vendor:product and serial),
    and per PC and user; mass storage first."""
    dialect = _dialect(engine)
    where = _kind(scope, criteria, "device.usb_attached")
    serial = sa.func.coalesce(json_text(dialect, events.c.payload, "serial"), "").label("serial")
    category = sa.func.coalesce(json_text(dialect, events.c.payload, "category"), "other").label(
        "category"
    )
    maker = sa.func.coalesce(json_text(dialect, events.c.payload, "manufacturer"), "").label(
        "maker"
    )
    product = sa.func.coalesce(json_text(dialect, events.c.payload, "product"), "").label("product")
    ids = sa.func.coalesce(events.c.tag, "").label("ids")
    user = sa.func.coalesce(events.c.os_user, "").label("user")
    attachments = sa.func.count().label("n")
    pcs = sa.func.count(sa.distinct(events.c.device_id)).label("pcs")
    last = sa.func.max(events.c.time_us).label("last")
    storage_first = sa.case((category == "mass_storage", 0), else_=1)
    with engine.connect() as conn:
        per_device = conn.execute(
            sa.select(ids, serial, category, maker, product, attachments, pcs, last)
            .where(*where)
            .group_by(ids, serial, category, maker, product)
            .order_by(storage_first, attachments.desc(), ids, serial)
            .limit(ROWS)
        ).all()
        per_pc = conn.execute(
            sa.select(
                events.c.device_id, user, ids, serial, category, maker, product, attachments, last
            )
            .where(*where)
            .group_by(events.c.device_id, user, ids, serial, category, maker, product)
            .order_by(storage_first, last.desc(), events.c.device_id, ids)
            .limit(ROWS)
        ).all()
        names = hostnames(conn, (r.device_id for r in per_pc))
    return UsbReport(
        devices=[
            UsbSighting(
                r.ids, r.serial, f"{r.maker} {r.product}".strip(), r.category, r.n, r.pcs, r.last
            )
            for r in per_device
        ],
        per_pc=[
            UsbSighting(
                r.ids,
                r.serial,
                f"{r.maker} {r.product}".strip(),
                r.category,
                r.n,
                1,
                r.last,
                device_id=r.device_id,
                hostname=names.get(r.device_id, r.device_id),
                user=r.user,
            )
            for r in per_pc
        ],
    )
