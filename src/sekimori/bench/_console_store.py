"""The console benchmark's store: generated once per (devices, events), optionally kept
in a cache directory, and what the timed pages ask about (the probe).

Layout of a store directory: ``server/`` is the server's data directory (the SQLite
file ``server/sekimori.db``; the server adds its PKI on first start) and
``fleet.json`` describes the load. ``fleet.json`` is written last, so a directory
without it is an interrupted load and is generated again.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

from sekimori.bench._fleet import FleetDevice
from sekimori.bench._fleet_load import LoadedFleet, load_fleet
from sekimori.bench._server import BenchmarkFailed
from sekimori.clock import now_us
from sekimori.server.store.engine import create_store_engine, migrate
from sekimori.server.store.rollups import rebuild_rollups
from sekimori.server.store.schema import usage_hourly

__all__ = ["FleetStore", "Probe", "prepare_store", "refresh_online", "store_counts"]

# Bump when the generator changes what it writes: kept stores of older versions are
# then generated again instead of reused.
GENERATOR_VERSION = 1
_SEED = 4


@dataclass(frozen=True, slots=True)
class Probe:
    """What the timed pages look at: a busy online PC, its user, its group."""

    device_id: str
    hostname: str
    user: str
    group: str
    hostname_query: str


@dataclass(frozen=True, slots=True)
class FleetStore:
    directory: Path
    devices: int
    events: int
    generated_us: int
    insert_seconds: float
    index_seconds: float
    probe: Probe
    per_kind: dict[str, int]
    reused: bool

    @property
    def database(self) -> Path:
        return self.directory / "server" / "sekimori.db"

    @property
    def load_rate(self) -> float:
        return self.events / self.insert_seconds


def store_directory(root: Path, devices: int, events: int) -> Path:
    return root / f"console-fleet-d{devices}-e{events}-v{GENERATOR_VERSION}"


def _probe(fleet: LoadedFleet, seqs: dict[str, int]) -> Probe:
    online = [d for d in fleet.devices if d.connected] or fleet.devices
    busiest: FleetDevice = max(online, key=lambda d: (seqs[d.id], d.id))
    return Probe(
        device_id=busiest.id,
        hostname=busiest.hostname,
        user=busiest.user,
        group=fleet.groups[busiest.group],
        # "tky-eigyo-pc0123" -> "eigyo-pc012": a search matching about ten PCs.
        hostname_query=busiest.hostname.split("-", 1)[1][:-1],
    )


def prepare_store(
    directory: Path, *, devices: int, events: int, log: Callable[[str], None] = print
) -> FleetStore:
    """Reuse the complete store in ``directory`` or generate it there."""
    marker = directory / "fleet.json"
    if marker.exists():
        _upgrade_kept(directory / "server" / "sekimori.db", log)
        saved = json.loads(marker.read_text())
        return FleetStore(
            directory=directory,
            devices=saved["devices"],
            events=saved["events"],
            generated_us=saved["generated_us"],
            insert_seconds=saved["insert_seconds"],
            index_seconds=saved["index_seconds"],
            probe=Probe(**saved["probe"]),
            per_kind=saved["per_kind"],
            reused=True,
        )
    if directory.exists():
        shutil.rmtree(directory)  # an interrupted load
    (directory / "server").mkdir(parents=True, mode=0o700)
    generated = now_us()
    fleet = load_fleet(
        directory / "server" / "sekimori.db",
        devices=devices,
        events=events,
        now=generated,
        seed=_SEED,
        progress=log,
    )
    with sqlite3.connect(directory / "server" / "sekimori.db") as db:
        seqs = dict(db.execute("SELECT id, acked_seq FROM devices").fetchall())
    store = FleetStore(
        directory=directory,
        devices=len(fleet.devices),
        events=fleet.events,
        generated_us=generated,
        insert_seconds=fleet.insert_seconds,
        index_seconds=fleet.index_seconds,
        probe=_probe(fleet, seqs),
        per_kind=fleet.per_kind,
        reused=False,
    )
    record = asdict(store)
    record.pop("directory")
    record.pop("reused")
    marker.write_text(json.dumps(record, indent=1, ensure_ascii=False))
    return store


def _upgrade_kept(database: Path, log: Callable[[str], None]) -> None:
    """A store kept by an older version: bring its schema up to date and fill
    rollups that did not exist when it was loaded."""
    engine = create_store_engine(f"sqlite:///{database.resolve()}")
    try:
        migrate(engine)
        with engine.connect() as conn:
            empty = conn.execute(sa.select(usage_hourly.c.kind).limit(1)).first() is None
        if empty:
            log("computing the report rollups of the kept store ...")
            rebuild_rollups(engine)
    finally:
        engine.dispose()


def refresh_online(database: Path) -> int:
    """Move the connected devices' last contact to the last 20 s, as a live fleet's
    heartbeats would (a kept store would otherwise show no device online)."""
    now = now_us()
    rng = random.Random(_SEED)  # noqa: S311 - benchmark data, not a secret
    with sqlite3.connect(database) as db:
        ids = [i for (i,) in db.execute("SELECT id FROM devices WHERE connected")]
        db.executemany(
            "UPDATE devices SET last_seen_us = ? WHERE id = ?",
            [(now - rng.randrange(20_000_000), i) for i in ids],
        )
    return len(ids)


def store_counts(database: Path) -> tuple[int, int, float]:
    """(devices, events, milliseconds of the raw ``SELECT count(*) FROM events``,
    the median of five) read with the plain driver, read-only."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        (devices,) = db.execute("SELECT count(*) FROM devices").fetchone()
        times = []
        events = -1
        for _ in range(5):
            started = time.perf_counter()
            (events,) = db.execute("SELECT count(*) FROM events").fetchone()
            times.append((time.perf_counter() - started) * 1000)
    except sqlite3.Error as exc:
        raise BenchmarkFailed(f"reading the store: {exc}") from None
    finally:
        db.close()
    return int(devices), int(events), statistics.median(times)
