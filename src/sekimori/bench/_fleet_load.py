"""Filling a fresh Sekimori store with a fleet and a month of its events, fast.

The database is made by the real migrations; rows go in with the plain sqlite3
driver: multi-row INSERTs in large transactions, ``synchronous=OFF`` during the load,
the events table's secondary indexes dropped first and re-created afterwards from the
very DDL the migrations wrote (one sort per index instead of ten million B-tree
insertions each). Rows are written in time order, as ingest would have written them,
so a time range is as contiguous on disk as in a real store.

Events: every PC's ``inventory.hardware`` and ``inventory.software`` in the window's
first two hours (an agent start), then the rest spread over the window weighted by
office hours in Japan (busy weekdays 9-18, quiet nights and weekends), each from a
random PC among those seen by then, with per-PC sequence numbers in time order. No PC
has events after it was last seen. A generator thread builds the rows while a writer
thread runs the statements (sqlite3 releases the GIL while SQLite works).
"""

from __future__ import annotations

import queue
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from sekimori.bench._fleet import HOUR_US, FleetDevice, make_devices, make_groups
from sekimori.bench._fleet_catalog import KIND_WEIGHTS, make_catalog
from sekimori.bench._fleet_inventory import SoftwareLists, hardware_json
from sekimori.bench._fleet_templates import USER, Variant
from sekimori.server.store.engine import create_store_engine, migrate
from sekimori.server.store.events import EventRow
from sekimori.server.store.rollups import rebuild_rollups

__all__ = ["WINDOW_DAYS", "LoadedFleet", "load_fleet"]

WINDOW_DAYS = 30
_DAY_US = 24 * HOUR_US
_JST_US = 9 * HOUR_US
_COLUMNS = "device_id, seq, time_us, received_us, kind, os_user, payload, tag, subject"
# 64 rows per INSERT: fewer statement steps than executemany, and cheaper to bind
# than statements of 1,024 rows (measured).
_ROWS_PER_STATEMENT = 64
_ROWS_PER_CHUNK = 8192
_CHUNKS_PER_COMMIT = 25
_WHEEL = 10_000


@dataclass(frozen=True, slots=True)
class LoadedFleet:
    devices: list[FleetDevice]
    groups: list[str]
    events: int
    per_kind: dict[str, int]
    window_start_us: int
    insert_seconds: float
    index_seconds: float


def _office_weight(t: int) -> float:
    """How busy an hour starting at ``t`` is, by Japan's clock."""
    local = t + _JST_US
    hour = local // HOUR_US % 24
    weekday = (local // _DAY_US + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    if weekday >= 5:
        return 1.0 if 9 <= hour < 19 else 0.2
    if 9 <= hour < 12 or 13 <= hour < 18:
        return 10.0
    if hour == 12:
        return 5.0
    if hour in (8, 18, 19):
        return 4.0
    if 20 <= hour < 23:
        return 1.0
    return 0.3


def _buckets(start: int, end: int, total: int) -> list[tuple[int, int, int]]:
    """(start, end, events) per clock hour of [start, end), summing to ``total``."""
    spans = []
    t = start
    while t < end:
        nxt = min(end, (t // HOUR_US + 1) * HOUR_US)
        spans.append((t, nxt, _office_weight(t) * (nxt - t)))
        t = nxt
    weight = sum(w for _, _, w in spans)
    exact = [total * w / weight for _, _, w in spans]
    counts = [int(x) for x in exact]
    by_fraction = sorted(range(len(spans)), key=lambda i: counts[i] - exact[i])
    for i in by_fraction[: total - sum(counts)]:
        counts[i] += 1
    return [(s, e, n) for (s, e, _), n in zip(spans, counts, strict=True)]


class _Writer(threading.Thread):
    """Runs the row chunks it is handed as multi-row INSERTs on its own connection."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="fleet-writer", daemon=True)
        self.path = path
        self.jobs: queue.Queue[list[EventRow] | None] = queue.Queue(maxsize=16)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            db = _connect(self.path)
            try:
                self._run(db)
            finally:
                db.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the generator thread
            self.error = exc
            while self.jobs.get() is not None:  # unblock the producer
                pass

    def _run(self, db: sqlite3.Connection) -> None:
        full = _insert_sql(_ROWS_PER_STATEMENT)
        db.execute("BEGIN")
        chunks = 0
        while (rows := self.jobs.get()) is not None:
            at = 0
            while len(rows) - at >= _ROWS_PER_STATEMENT:
                db.execute(full, list(chain.from_iterable(rows[at : at + _ROWS_PER_STATEMENT])))
                at += _ROWS_PER_STATEMENT
            if at < len(rows):
                db.execute(_insert_sql(len(rows) - at), list(chain.from_iterable(rows[at:])))
            chunks += 1
            if chunks % _CHUNKS_PER_COMMIT == 0:
                db.execute("COMMIT")
                db.execute("BEGIN")
        db.execute("COMMIT")

    def put(self, rows: list[EventRow]) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(rows)


def _insert_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO events ({_COLUMNS}) VALUES {values}"  # noqa: S608 - constant


def _connect(path: Path) -> sqlite3.Connection:
    """A connection for bulk loading: no rollback journal and no syncs (a load that
    dies is thrown away: the cache marks a store complete only after its load), and
    a page cache large enough for the primary key's 20,000 insertion points."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-2097152")  # KiB: 2 GiB
    db.execute("PRAGMA temp_store=MEMORY")
    return db


def _wheel(catalog: dict[str, list[Variant]]) -> list[list[Variant]]:
    total = sum(KIND_WEIGHTS.values())
    wheel: list[list[Variant]] = []
    for kind, weight in KIND_WEIGHTS.items():
        wheel.extend([catalog[kind]] * round(_WHEEL * weight / total))
    return wheel


class _EventSource:
    """Every event row in time order (sequence numbers per device ascending), with
    the counts the loader needs kept on the side: ``seqs[i]`` is device i's last
    sequence number, ``per_kind`` the events of each kind."""

    def __init__(
        self, devices: list[FleetDevice], total: int, now: int, window_start: int, seed: int
    ) -> None:
        self.devices = devices
        self.total = total
        self.now = now
        self.window_start = window_start
        self.seed = seed
        self.seqs = [0] * len(devices)
        self.per_kind: Counter[str] = Counter()

    def rows(self) -> Iterator[EventRow]:
        devices, seqs, window_start = self.devices, self.seqs, self.window_start
        rng = random.Random(self.seed)  # noqa: S311 - benchmark data, not a secret
        rand = rng.random
        software = SoftwareLists(rng)
        inventory = []
        for d in devices:
            hardware_at = window_start + rng.randrange(HOUR_US)
            inventory.append((hardware_at, d.index, "inventory.hardware"))
            inventory.append((hardware_at + HOUR_US, d.index, "inventory.software"))
        inventory.sort()
        for t, i, kind in inventory:
            d = devices[i]
            seqs[i] += 1
            if kind == "inventory.hardware":
                payload = hardware_json(d, rng)
            else:
                payload = software.for_device(d, rng)
            yield (d.id, seqs[i], t, t + 2_000_000, kind, None, payload, None, None)
        per_kind = self.per_kind
        per_kind["inventory.hardware"] = per_kind["inventory.software"] = len(devices)

        wheel = _wheel(make_catalog(self.seed))
        spin = len(wheel)
        ids = [d.id for d in devices]
        users = [d.user for d in devices]
        last_seen = [d.last_seen_us for d in devices]
        # Devices by last contact, latest first: those seen after t are a prefix.
        order = sorted(range(len(devices)), key=lambda i: -last_seen[i])
        seen_order = [last_seen[i] for i in order]
        eligible = len(order)
        buckets = _buckets(window_start + 2 * HOUR_US, self.now, self.total - len(inventory))
        for start, end, count in buckets:
            while eligible > 1 and seen_order[eligible - 1] < start:
                eligible -= 1
            span = end - start
            for t in sorted([start + int(rand() * span) for _ in range(count)]):
                i = order[int(rand() * eligible)]
                t = min(t, last_seen[i])  # noqa: PLW2901 - a PC records nothing after last contact
                variants = wheel[int(rand() * spin)]
                v = variants[int(rand() * len(variants))]
                seq = seqs[i] = seqs[i] + 1
                per_kind[v.kind] += 1
                user = users[i]
                os_user = user if v.os_user == USER else v.os_user
                if v.dynamic:
                    duration = v.min_duration_us + int(rand() * v.duration_span_us)
                    fill = (user, t - duration, duration, t)
                    yield (
                        ids[i], seq, t, t + 1_500_000, v.kind, os_user,
                        v.payload.format(*fill),
                        None if v.tag is None else v.tag.format(*fill),
                        None if v.subject is None else v.subject.format(*fill),
                    )  # fmt: skip
                else:
                    yield (
                        ids[i], seq, t, t + 1_500_000, v.kind, os_user, v.payload, v.tag,
                        v.subject,
                    )  # fmt: skip


def load_fleet(
    path: Path,
    *,
    devices: int,
    events: int,
    now: int,
    seed: int = 4,
    progress: Callable[[str], None] = print,
) -> LoadedFleet:
    """Create the store at ``path`` (real migrations) and fill it; see the module
    docstring. ``events`` must be at least ``2 * devices`` (two inventory events each)."""
    if devices < 1 or events < 2 * devices:
        raise ValueError("need at least one device and two events per device")
    engine = create_store_engine(f"sqlite:///{path.resolve()}")
    try:
        migrate(engine)
    finally:
        engine.dispose()
    window_start = now - WINDOW_DAYS * _DAY_US
    fleet = make_devices(devices, now=now, window_start=window_start, seed=seed)
    groups = make_groups()
    db = _connect(path)
    try:
        index_ddl = _add_fleet(db, fleet, groups)
        progress(f"  {len(fleet):,} devices in {len(groups)} groups; writing {events:,} events ...")
        started = time.perf_counter()
        source = _EventSource(fleet, events, now, window_start, seed)
        _write_events(path, source, progress, started)
        insert_seconds = time.perf_counter() - started
        progress(f"  re-creating {len(index_ddl)} event indexes ...")
        started = time.perf_counter()
        db.execute("PRAGMA threads=2")  # CREATE INDEX sorts with a helper thread
        for ddl in index_ddl:
            db.execute(ddl)
        index_seconds = time.perf_counter() - started
        db.execute("BEGIN")
        db.executemany(
            "UPDATE devices SET acked_seq = ? WHERE id = ?",
            [(seq, d.id) for d, seq in zip(fleet, source.seqs, strict=True)],
        )
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    progress("  computing the report rollups ...")
    rebuild_store_rollups(path)
    return LoadedFleet(
        devices=fleet,
        groups=groups,
        events=sum(source.per_kind.values()),
        per_kind=dict(source.per_kind),
        window_start_us=window_start,
        insert_seconds=insert_seconds,
        index_seconds=index_seconds,
    )


def rebuild_store_rollups(path: Path) -> None:
    """Recompute the rollups of the store at ``path`` (the bulk load bypasses ingest,
    which keeps them otherwise)."""
    engine = create_store_engine(f"sqlite:///{path.resolve()}")
    try:
        rebuild_rollups(engine)
    finally:
        engine.dispose()


def _add_fleet(db: sqlite3.Connection, fleet: list[FleetDevice], groups: list[str]) -> list[str]:
    """Insert groups and devices, drop the events table's secondary indexes; returns
    their DDL (to re-create them exactly as the migrations made them)."""
    db.execute("BEGIN")
    group_ids = []
    for name in groups:
        cursor = db.execute(
            "INSERT INTO groups (name, created_us) VALUES (?, ?)",
            (name, min(d.enrolled_us for d in fleet)),
        )
        group_ids.append(cursor.lastrowid)
    db.executemany(
        "INSERT INTO devices (id, hostname, os, os_version, agent_version, group_id, "
        "cert_serial, enrolled_us, first_seen_us, last_seen_us, connected, revoked_us, "
        "acked_seq, outbox_events, dropped_total) "
        "VALUES (?, ?, 'linux', ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0)",
        [
            (
                d.id,
                d.hostname,
                d.os.pretty_name,
                d.agent_version,
                group_ids[d.group],
                uuid.UUID(d.id).hex[:32],
                d.enrolled_us,
                d.enrolled_us + 60_000_000,
                d.last_seen_us,
                d.connected,
                d.revoked_us,
            )
            for d in fleet
        ],
    )
    ddl = [
        sql
        for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
            "AND sql IS NOT NULL ORDER BY name"
        )
    ]
    for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
        "AND sql IS NOT NULL"
    ).fetchall():
        db.execute(f'DROP INDEX "{name}"')
    db.execute("COMMIT")
    return ddl


def _write_events(
    path: Path, source: _EventSource, progress: Callable[[str], None], started: float
) -> None:
    writer = _Writer(path)
    writer.start()
    chunk: list[EventRow] = []
    step = max(1, source.total // 10)
    try:
        for n, row in enumerate(source.rows(), 1):
            chunk.append(row)
            if len(chunk) == _ROWS_PER_CHUNK:
                writer.put(chunk)
                chunk = []
            if n % step == 0:
                rate = n / (time.perf_counter() - started)
                progress(f"    {n:>12,} events ({rate:,.0f}/s)")
        if chunk:
            writer.put(chunk)
    finally:
        writer.jobs.put(None)
        writer.join()
    if writer.error is not None:
        raise writer.error
