"""Rollups: event counts per UTC hour, device group, kind and key, kept at ingest.

A report over the whole fleet (a week of web visits is 700,000 events at 20,000 PCs)
cannot aggregate raw rows within the console's 200 ms; ``usage_hourly`` holds the
same sums in a few thousand rows. Each event counts once in the row of
(its kind, the UTC hour of its time, its device's group, its key):

* key: the web host (``web.visit``), the application of the focus span the event
  ended (``window.focus``/``window.idle``), vendor:product (``device.usb_attached``);
  empty for every other kind;
* amount: the ended span's duration (window events), the bytes copied
  (``file.copied_to_removable``); 0 otherwise.

Per device or per user rollups would not compress (about 16 events per PC per day),
so reports filtered by device or OS user read the raw events on their indexes.

Ingest (``add_batch_rollups``, inside ``write_batches``' transaction) counts only the
rows the transaction newly stores: those above the device's high-water mark
``acked_seq`` as read at the start, once each — a resent batch adds nothing. This
relies on the ingest contract that a seq at or below ``acked_seq`` is never stored
later (the channel drops such events; a quarantined seq stays quarantined).
``rebuild_rollups`` recomputes them from the events (after a bulk load, or to repair).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sekimori.server.store.schema import devices, events, usage_hourly

if TYPE_CHECKING:
    from sekimori.server.store.events import StoredBatch

__all__ = [
    "HOUR_US",
    "SPAN_KINDS",
    "add_batch_rollups",
    "device_floors",
    "hour_floor",
    "rebuild_rollups",
    "rollup_columns",
    "rollup_key",
]

HOUR_US: Final = 3_600_000_000
SPAN_KINDS: Final = frozenset({"window.focus", "window.idle"})
_TAG_KINDS: Final = frozenset({"web.visit", "device.usb_attached"})
_SIZE_KIND: Final = "file.copied_to_removable"
_MAX_KEY: Final = 255


def hour_floor(time_us: int) -> int:
    return time_us - time_us % HOUR_US


def rollup_key(kind: str, tag: str | None, payload: str) -> tuple[str, int]:
    """(key, amount) of one event, as ``rebuild_rollups`` computes them in SQL."""
    if kind in _TAG_KINDS:
        return tag or "", 0
    if kind in SPAN_KINDS:
        # Only these need the payload (6 % of events): parsing JSON for every row
        # would cost the ingest path more than the rollup saves.
        previous = json.loads(payload).get("previous")
        if not isinstance(previous, dict):
            return "", 0
        window = previous.get("window") or {}
        return str(window.get("application") or "")[:_MAX_KEY], int(
            previous.get("duration_us") or 0
        )
    if kind == _SIZE_KIND:
        size = json.loads(payload).get("size")
        return "", int(size) if isinstance(size, int) else 0
    return "", 0


_Key = tuple[str, int, int, str]  # kind, hour_us, group_id, key


def device_floors(
    conn: sa.Connection, batches: Sequence[StoredBatch]
) -> dict[str, tuple[int, int]]:
    """(group id, acked_seq) of each device with rows in ``batches``, read in the
    writing transaction BEFORE the events are inserted: rows above ``acked_seq`` are
    the new ones (rollups and rules count only those). Unknown devices are absent."""
    wanted = sorted({b.device_id for b in batches if b.rows})
    known: dict[str, tuple[int, int]] = {}
    for start in range(0, len(wanted), 500):
        query = sa.select(devices.c.id, devices.c.group_id, devices.c.acked_seq).where(
            devices.c.id.in_(wanted[start : start + 500])
        )
        if conn.dialect.name == "postgresql":
            # Two replicas writing one device's resend must not both count it.
            query = query.with_for_update()
        known.update({r.id: (int(r.group_id), int(r.acked_seq)) for r in conn.execute(query)})
    return known


def add_batch_rollups(
    conn: sa.Connection,
    batches: Sequence[StoredBatch],
    known: dict[str, tuple[int, int]] | None = None,
) -> None:
    """Add the batches' new rows to the rollups. Call in the writing transaction
    BEFORE the events are inserted and ``acked_seq`` is raised (or pass ``known``
    from ``device_floors`` read then)."""
    if known is None:
        known = device_floors(conn, batches)
    if not known:
        return
    # The hot path of ingest: one pass over every row, so no call per row for the
    # common kinds (no key, no amount).
    sums: dict[_Key, list[int]] = {}
    keyed = _TAG_KINDS | SPAN_KINDS | {_SIZE_KIND}
    counted: dict[str, int] = {}
    for batch in batches:
        found = known.get(batch.device_id)
        if found is None:
            continue  # no such device: its events belong to no group
        group_id, floor = found
        # A batch's seqs ascend; a second batch of the same device in this commit
        # (a resend) counts only above what the first one counted.
        floor = max(floor, counted.get(batch.device_id, 0))
        for row in batch.rows:
            seq = row[1]
            if seq <= floor:
                continue
            floor = seq
            kind = row[4]
            if kind in keyed:
                key, amount = rollup_key(kind, row[7], row[6])
            else:
                key, amount = "", 0
            time_us = row[2]
            cell_key = (kind, time_us - time_us % HOUR_US, group_id, key)
            cell = sums.get(cell_key)
            if cell is None:
                sums[cell_key] = [1, amount]
            else:
                cell[0] += 1
                cell[1] += amount
        counted[batch.device_id] = floor
    if sums:
        _upsert(conn, sorted(sums.items()))


def _upsert(conn: sa.Connection, cells: Iterable[tuple[_Key, list[int]]]) -> None:
    # Sorted by primary key: concurrent writers on PostgreSQL lock rows in one order.
    conn.execute(
        sa.text(
            "INSERT INTO usage_hourly (kind, hour_us, group_id, key, count, amount) "
            "VALUES (:kind, :hour_us, :group_id, :key, :count, :amount) "
            "ON CONFLICT (kind, hour_us, group_id, key) DO UPDATE SET "
            "count = usage_hourly.count + excluded.count, "
            "amount = usage_hourly.amount + excluded.amount"
        ),
        [
            {
                "kind": kind,
                "hour_us": hour,
                "group_id": group,
                "key": key,
                "count": count,
                "amount": amount,
            }
            for (kind, hour, group, key), (count, amount) in cells
        ],
    )


def _json(dialect: str, *path: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        doc: sa.ColumnElement[Any] = sa.cast(events.c.payload, postgresql.JSONB)
        for key in path[:-1]:
            doc = doc.op("->")(key)
        return doc.op("->>", return_type=sa.Text)(path[-1])
    return sa.func.json_extract(events.c.payload, "$." + ".".join(path))


def rollup_columns(dialect: str) -> tuple[sa.ColumnElement[str], sa.ColumnElement[int]]:
    """``rollup_key`` in SQL: (key, amount) of each event row."""
    application = sa.func.substr(
        sa.func.coalesce(_json(dialect, "previous", "window", "application"), ""), 1, _MAX_KEY
    )
    duration = sa.func.coalesce(
        sa.cast(_json(dialect, "previous", "duration_us"), sa.BigInteger), 0
    )
    size = sa.func.coalesce(sa.cast(_json(dialect, "size"), sa.BigInteger), 0)
    key = sa.case(
        (events.c.kind.in_(sorted(_TAG_KINDS)), sa.func.coalesce(events.c.tag, "")),
        (events.c.kind.in_(sorted(SPAN_KINDS)), application),
        else_="",
    )
    amount = sa.case(
        (events.c.kind.in_(sorted(SPAN_KINDS)), duration),
        (events.c.kind == _SIZE_KIND, size),
        else_=0,
    )
    return key, amount


def rebuild_rollups(engine: sa.Engine, since_us: int | None = None) -> int:
    """Recompute the rollups from the events, from the hour of ``since_us`` on (all
    when None), in one transaction; returns the number of rollup rows written. Run it
    while no agent is writing, or later events of the rebuilt hours may be missed or
    counted twice."""
    dialect = engine.dialect.name
    key, amount = rollup_columns(dialect)
    hour = (events.c.time_us - events.c.time_us % HOUR_US).label("hour_us")
    key = key.label("key")
    source = (
        sa.select(
            events.c.kind,
            hour,
            devices.c.group_id,
            key,
            sa.func.count().label("count"),
            sa.func.coalesce(sa.func.sum(amount), 0).label("amount"),
        )
        .select_from(events.join(devices, devices.c.id == events.c.device_id))
        .group_by(events.c.kind, hour, devices.c.group_id, key)
    )
    delete = sa.delete(usage_hourly)
    if since_us is not None:
        start = hour_floor(since_us)
        source = source.where(events.c.time_us >= start)
        delete = delete.where(usage_hourly.c.hour_us >= start)
    with engine.begin() as conn:
        conn.execute(delete)
        conn.execute(
            usage_hourly.insert().from_select(
                ["kind", "hour_us", "group_id", "key", "count", "amount"], source
            )
        )
        # Counted, not rowcount: drivers differ on INSERT ... SELECT.
        written = sa.select(sa.func.count()).select_from(usage_hourly)
        if since_us is not None:
            written = written.where(usage_hourly.c.hour_us >= hour_floor(since_us))
        return int(conn.execute(written).scalar_one())
