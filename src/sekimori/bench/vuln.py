"""``sekimori bench vuln``: vulnerability matching at fleet size.

What runs, all real except the data (see ``_vuln_data`` for the synthetic feed and
fleet, and why):

1. a store made by the real migrations; the synthetic Debian OSV zip imported through
   the real importer (parse, validate, one transaction) — the import time is printed;
2. ``--devices`` Debian 12 PCs with ``--packages`` packages each in
   ``device_packages`` (written in SQL: 20 M rows through the job's event path would
   measure ingest, not matching), their release known to the job;
3. the full re-match (``Evaluator.rematch_all``: load the ranges, match every distinct
   installed version, join and diff in SQL) — goal ≤ 60 s;
4. incremental re-evaluation: ``--changes`` times, one PC reports an upgrade (an
   ``inventory.software_upgraded`` event stored with its ``acked_seq``) and the job's
   pending pass applies it and re-matches that PC — goal ≤ 100 ms each (p95 shown);
5. the baseline, measured in the same run: a full scan of ``device_packages``
   (``count(*)``), the distinct-version scan the full match starts with, and reading
   one PC's package rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

from sekimori.bench._vuln_data import Catalog, catalog, feed_zip
from sekimori.clock import now_us
from sekimori.server.store.engine import create_store_engine, migrate
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import (
    device_packages,
    devices,
    events,
    vuln_device_state,
    vuln_findings,
)
from sekimori.server.store.vuln_matching import distinct_match_keys
from sekimori.server.vuln.feeds import FeedLimits
from sekimori.server.vuln.importer import import_feed
from sekimori.server.vuln.job import Evaluator

__all__ = ["FULL_GOAL_S", "INCREMENTAL_GOAL_MS", "main"]

FULL_GOAL_S = 60.0
INCREMENTAL_GOAL_MS = 100.0

_bench_catalog = sa.table(
    "bench_catalog",
    sa.column("idx"),
    sa.column("name"),
    sa.column("source"),
    sa.column("v0"),
    sa.column("v1"),
    sa.column("v2"),
)
_bench_devices = sa.table("bench_devices", sa.column("n"), sa.column("id"))


def _say(text: str) -> None:
    print(text, flush=True)


def _load_fleet(engine: sa.Engine, cat: Catalog, n_devices: int, n_packages: int) -> list[str]:
    installed = cat.installed(n_packages)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n_devices)]
    now = now_us()
    meta = sa.MetaData()
    helper_catalog = sa.Table(
        "bench_catalog",
        meta,
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("source", sa.String(255)),
        sa.Column("v0", sa.String(255)),
        sa.Column("v1", sa.String(255)),
        sa.Column("v2", sa.String(255)),
    )
    helper_devices = sa.Table(
        "bench_devices",
        meta,
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("id", sa.String(36)),
    )
    meta.drop_all(engine)
    meta.create_all(engine)
    with engine.begin() as conn:
        group = ensure_group(conn, "bench")
        conn.execute(
            sa.insert(helper_catalog),
            [
                {
                    "idx": i,
                    "name": name,
                    "source": src.name,
                    "v0": src.version(src.updates),
                    "v1": src.version(src.updates - 1),
                    "v2": src.version(src.updates - 2),
                }
                for i, (name, src) in enumerate(installed)
            ],
        )
        conn.execute(sa.insert(helper_devices), [{"n": i, "id": d} for i, d in enumerate(ids)])
        conn.execute(
            sa.insert(devices),
            [
                {
                    "id": d,
                    "hostname": f"pc-{i:05d}",
                    "os": "linux",
                    "os_version": "Debian GNU/Linux 12 (bookworm)",
                    "agent_version": "0.1.0",
                    "group_id": group,
                    "cert_serial": uuid.uuid4().hex,
                    "enrolled_us": now,
                    "connected": False,
                    "acked_seq": 0,
                    "outbox_events": 0,
                    "dropped_total": 0,
                }
                for i, d in enumerate(ids)
            ],
        )
        conn.execute(
            sa.insert(vuln_device_state),
            [
                {
                    "device_id": d,
                    "os_id": "debian",
                    "os_version_id": "12",
                    "os_codename": "bookworm",
                    "release_ecosystem": "Debian:12",
                    "applied_seq": 0,
                    "updated_us": now,
                }
                for d in ids
            ],
        )
    # Per PC and source package: current on 80 %, one update behind on 15 %, two on 5 %.
    lag = (_bench_devices.c.n * 7919 + (_bench_catalog.c.idx / 2) * 104729) % 100
    version = sa.case(
        (lag < 80, _bench_catalog.c.v0), (lag < 95, _bench_catalog.c.v1), else_=_bench_catalog.c.v2
    )
    rows = sa.select(
        _bench_devices.c.id,
        sa.literal("dpkg"),
        _bench_catalog.c.name,
        sa.literal("amd64"),
        version,
        _bench_catalog.c.source,
        version,
        sa.literal("Debian:12"),
        _bench_catalog.c.source,
        version,
    ).select_from(_bench_devices.join(_bench_catalog, sa.true()))
    index = next(i for i in device_packages.indexes if i.name == "ix_device_packages_match")
    with engine.begin() as conn:
        index.drop(conn)  # built once after the load: far faster than row by row
        conn.execute(
            sa.insert(device_packages).from_select(
                [
                    "device_id",
                    "manager",
                    "name",
                    "architecture",
                    "version",
                    "source",
                    "source_version",
                    "match_ecosystem",
                    "match_package",
                    "match_version",
                ],
                rows,
            )
        )
        index.create(conn)
    meta.drop_all(engine)
    return ids


T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _upgrade(engine: sa.Engine, device_id: str, cat: Catalog, n_packages: int, k: int) -> None:
    """Store one upgrade event for ``device_id`` as ingest would (payload, acked_seq)."""
    name, source = cat.installed(n_packages)[(k * 37) % n_packages]
    payload = {
        "manager": "dpkg",
        "name": name,
        "architecture": "amd64",
        "from_version": source.version(source.updates - 2),
        "to_version": source.version(source.updates),
        "source": source.name,
        "source_version": source.version(source.updates),
    }
    now = now_us()
    with engine.begin() as conn:
        seq = (
            int(
                conn.execute(
                    sa.select(devices.c.acked_seq).where(devices.c.id == device_id)
                ).scalar_one()
            )
            + 1
        )
        conn.execute(
            sa.insert(events).values(
                device_id=device_id,
                seq=seq,
                time_us=now,
                received_us=now,
                kind="inventory.software_upgraded",
                os_user=None,
                payload=json.dumps(payload),
                tag=None,
                subject=None,
            )
        )
        conn.execute(sa.update(devices).where(devices.c.id == device_id).values(acked_seq=seq))


def run(url: str, n_devices: int, n_packages: int, n_records: int, changes: int) -> int:
    engine = create_store_engine(url)
    try:
        migrate(engine)
        cat = catalog()
        _say(f"generating a synthetic Debian OSV feed of {n_records:,} records ...")
        data = feed_zip(n_records, cat)
        seconds, record = _timed(
            lambda: import_feed(
                engine,
                data,
                source="bench-debian.zip",
                imported_by="bench",
                now_us=now_us(),
                limits=FeedLimits(),
            )
        )
        _say(
            f"import: {len(data) / 1e6:.1f} MB zip, {record.advisories:,} records, "
            f"{record.ranges:,} ranges in {seconds:.1f} s"
        )
        _say(f"loading {n_devices:,} PCs x {n_packages:,} packages ...")
        seconds, ids = _timed(lambda: _load_fleet(engine, cat, n_devices, n_packages))
        _say(f"fleet loaded in {seconds:.0f} s")

        with engine.connect() as conn:
            scan_s, total = _timed(
                lambda: conn.execute(
                    sa.select(sa.func.count()).select_from(device_packages)
                ).scalar_one()
            )
            distinct_s, keys = _timed(lambda: distinct_match_keys(conn))
        evaluator = Evaluator(engine)
        full_s, (opened, _resolved) = _timed(lambda: evaluator.rematch_all(now_us=now_us()))
        phases = dict(evaluator.last_phases)
        with engine.connect() as conn:
            open_findings = conn.execute(
                sa.select(sa.func.count()).where(vuln_findings.c.resolved_us.is_(None))
            ).scalar_one()

        samples: list[float] = []
        read_samples: list[float] = []
        for k in range(changes):
            device_id = ids[(k * 7919) % len(ids)]
            _upgrade(engine, device_id, cat, n_packages, k)
            seconds, changed = _timed(
                lambda: evaluator.apply_pending(now_us=now_us(), rematch=True)
            )
            if changed != [device_id]:
                _say(f"incremental pass changed {changed!r}, expected [{device_id}]")
                return 1
            samples.append(seconds * 1000)
            with engine.connect() as conn:
                query = sa.select(device_packages).where(device_packages.c.device_id == device_id)
                started = time.perf_counter()
                conn.execute(query).all()
                read_s = time.perf_counter() - started
            read_samples.append(read_s * 1000)
    finally:
        engine.dispose()
    p50 = statistics.median(samples)
    p95 = sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]
    _say("")
    backend = url.split("://", maxsplit=1)[0]
    _say(f"store: {backend}, {total:,} device packages, {len(keys):,} distinct versions")
    _say(f"baseline  scan device_packages (count)    {scan_s:8.2f} s")
    _say(f"baseline  distinct installed versions     {distinct_s:8.2f} s")
    _say(
        f"full re-match                             {full_s:8.2f} s   goal <= {FULL_GOAL_S:.0f} s  "
        f"{'OK' if full_s <= FULL_GOAL_S else 'MISSED'}  ({opened:,} findings opened, "
        f"{open_findings:,} open)"
    )
    for phase, seconds in phases.items():
        _say(f"  of which {phase:<31} {seconds:8.2f} s")
    _say(
        f"baseline  read one PC's package rows      {statistics.median(read_samples):8.1f} ms (p50)"
    )
    _say(
        f"incremental, one changed PC (n={len(samples)})   p50 {p50:6.1f} ms  p95 {p95:6.1f} ms   "
        f"goal <= {INCREMENTAL_GOAL_MS:.0f} ms  {'OK' if p95 <= INCREMENTAL_GOAL_MS else 'MISSED'}"
    )
    return 0


def main(args: argparse.Namespace) -> int:
    changes = getattr(args, "changes", 20)
    if args.database_url:
        return run(args.database_url, args.devices, args.packages, args.records, changes)
    with tempfile.TemporaryDirectory(prefix="sekimori-bench-vuln-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        try:
            return run(url, args.devices, args.packages, args.records, changes)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
