"""Writing events: the ingest hot path.

``write_batches`` stores many devices' batches in one transaction (group commit) and
raises each device's high-water mark. Rows go in with ON CONFLICT DO NOTHING on the
(device_id, seq) primary key: a batch replayed after a lost acknowledgement stores
nothing twice. The same transaction adds the new rows to the rollups
(store/rollups.py), so a report never sees events without their counts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import sqlalchemy as sa

from sekimori.protocol.events import Payload
from sekimori.server.store.rollups import add_batch_rollups, device_floors
from sekimori.server.store.schema import devices, events, quarantine
from sekimori.server.store.screen_frames import PendingFrame, write_frames

__all__ = ["EventRow", "QuarantineRow", "StoredBatch", "count_events", "write_batches"]

# (device_id, seq, time_us, received_us, kind, os_user, payload_json, tag, subject)
EventRow = tuple[str, int, int, int, str, str | None, str, str | None, str | None]


@dataclass(slots=True)
class QuarantineRow:
    device_id: str
    seq: int
    received_us: int
    kind: str
    reason: str
    raw: bytes


@dataclass(slots=True)
class StoredBatch:
    device_id: str
    through_seq: int
    rows: list[EventRow]
    quarantined: list[QuarantineRow] = field(default_factory=list)
    # The validated payload of each row, when the caller has them (ingest does): the
    # alert rules read these instead of decoding the JSON again.
    payloads: list[Payload] | None = None
    # Screen frames among the rows, pictures included: the ingest writer puts the
    # pictures in the blob store before the transaction; their rows go in with it.
    frames: list[PendingFrame] = field(default_factory=list)
    # Alerts the rules opened on this batch's events, (alert id, rule id): the channel
    # asks the PC for a screenshot burst after the commit. Filled in by the writer.
    opened_alerts: list[tuple[int, str]] = field(default_factory=list)
    # Filled in by write_batches:
    inserted: int = 0


_EVENT_COLUMNS = (
    "device_id",
    "seq",
    "time_us",
    "received_us",
    "kind",
    "os_user",
    "payload",
    "tag",
    "subject",
)
_sql_cache: dict[tuple[str, str, int], str] = {}


def _positional_insert(dialect: str, table: sa.Table, columns: Sequence[str], rows: int = 1) -> str:
    """INSERT ... ON CONFLICT DO NOTHING with positional parameters for ``rows`` rows.

    The hot path hands tuples straight to the driver: building a dict per row for
    SQLAlchemy would cost more than the insert itself on SQLite.
    """
    key = (dialect, table.name, rows)
    if key not in _sql_cache:
        cols = ", ".join(columns)
        mark = "%s" if dialect == "postgresql" else "?"
        values = ", ".join(["(" + ", ".join([mark] * len(columns)) + ")"] * rows)
        pk = ", ".join(c.name for c in table.primary_key.columns)
        _sql_cache[key] = (
            f"INSERT INTO {table.name} ({cols}) VALUES {values} ON CONFLICT ({pk}) DO NOTHING"  # noqa: S608 - names from our schema, values bound
        )
    return _sql_cache[key]


# SQLite: rows per INSERT statement, largest first. The sqlite3 module releases the
# GIL around every statement step and executemany steps once per row: with the event
# loop busy in the same process, each step ended in a wait for the GIL (the convoy
# effect) and the writer ran at a third of its speed. Multi-row statements step once
# per up to 1024 rows (and are faster on their own); the smaller sizes take the
# remainder, so four cached statements cover any batch.
_SQLITE_INSERT_SIZES = (1024, 128, 16, 1)


def _sqlite_insert_events(db: sqlite3.Connection, rows: list[EventRow]) -> int:
    """Insert rows with few statement steps; returns how many were new."""
    # Builds before SQLite 3.32 allow only 999 bound parameters per statement.
    limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    inserted = 0
    at = 0
    cursor = db.cursor()
    try:
        for size in _SQLITE_INSERT_SIZES:
            if size > 1 and size * len(_EVENT_COLUMNS) > limit:
                continue
            sql = _positional_insert("sqlite", events, _EVENT_COLUMNS, size)
            while len(rows) - at >= size:
                cursor.execute(sql, list(chain.from_iterable(rows[at : at + size])))
                inserted += cursor.rowcount
                at += size
    finally:
        cursor.close()
    return inserted


def write_batches(
    conn: sa.Connection, batches: Sequence[StoredBatch]
) -> dict[str, tuple[int, int]]:
    """Insert the batches' events and quarantined events and advance each device's
    ``acked_seq``. The caller owns the transaction (commit, then acknowledge).

    Returns each known device's (group id, acked_seq) as it was before: rows above it
    are the ones this call stored (the rules evaluate only those)."""
    dialect = conn.dialect.name
    # Before the inserts: new rows are told from resent ones by the acked_seq they raise.
    floors = device_floors(conn, batches)
    add_batch_rollups(conn, batches, floors)
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None  # noqa: S101 - a live connection always has one
    cursor = dbapi.cursor()
    try:
        sql = _positional_insert(dialect, events, _EVENT_COLUMNS)
        for batch in batches:
            if not batch.rows:
                continue
            if isinstance(dbapi, sqlite3.Connection):
                batch.inserted = _sqlite_insert_events(dbapi, batch.rows)
            else:
                cursor.executemany(sql, batch.rows)
                batch.inserted = cursor.rowcount if cursor.rowcount >= 0 else len(batch.rows)
        q_rows = [
            (q.device_id, q.seq, q.received_us, q.kind[:256], q.reason, q.raw)
            for b in batches
            for q in b.quarantined
        ]
        if q_rows:
            cursor.executemany(
                _positional_insert(
                    dialect,
                    quarantine,
                    ("device_id", "seq", "received_us", "kind", "reason", "raw"),
                ),
                q_rows,
            )
    finally:
        cursor.close()
    write_frames(conn, [f for b in batches for f in b.frames])
    high: dict[str, int] = {}
    for batch in batches:
        high[batch.device_id] = max(high.get(batch.device_id, 0), batch.through_seq)
    for device_id, seq in high.items():
        conn.execute(
            sa.update(devices)
            .where(devices.c.id == device_id, devices.c.acked_seq < seq)
            .values(acked_seq=seq)
        )
    return floors


def count_events(engine: sa.Engine, device_id: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(events)
    if device_id is not None:
        query = query.where(events.c.device_id == device_id)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
