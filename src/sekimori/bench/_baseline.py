"""The baseline for the ingest benchmark: the same rows inserted straight into the
store with the plain driver, no network, no validation, no Sekimori code in between.

The table comes from the real migrations (same columns, primary key and indexes as
the server's), on a fresh database, so the only difference from the server's write
path is everything the server does around the INSERT.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sekimori.server.store.engine import create_store_engine, migrate
from sekimori.server.store.events import EventRow

__all__ = ["RawInsert", "postgres_insert_rate", "sqlite_insert_rate"]

_COLUMNS = "device_id, seq, time_us, received_us, kind, os_user, payload, tag, subject"


@dataclass(frozen=True, slots=True)
class RawInsert:
    rows: int
    seconds: float
    chunk_rows: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def _migrate(url: str) -> None:
    engine = create_store_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


def sqlite_insert_rate(
    path: Path, chunks: Sequence[list[EventRow]], *, synchronous: str = "FULL"
) -> RawInsert:
    """Insert the chunks into a fresh SQLite file (WAL, ``synchronous`` as the
    server's), one ``executemany`` and one commit per chunk."""
    _migrate(f"sqlite:///{path.resolve()}")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        sql = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant
        start = time.perf_counter()
        for chunk in chunks:
            db.execute("BEGIN")
            db.executemany(sql, chunk)
            db.execute("COMMIT")
        seconds = time.perf_counter() - start
        (stored,) = db.execute("SELECT count(*) FROM events").fetchone()
    finally:
        db.close()
    return RawInsert(int(stored), seconds, max((len(c) for c in chunks), default=0))


def postgres_insert_rate(url: str, chunks: Sequence[list[EventRow]]) -> RawInsert:
    """Insert the chunks into a fresh PostgreSQL database with psycopg's
    ``executemany``, one commit per chunk. ``url`` is a postgresql:// URL."""
    import psycopg

    _migrate(url)
    sql = f"INSERT INTO events ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: S608 - constant
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        for chunk in chunks:
            with conn.cursor() as cur:
                cur.executemany(sql, chunk)
            conn.commit()
        seconds = time.perf_counter() - start
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM events")
            row = cur.fetchone()
    stored = int(row[0]) if row else 0
    return RawInsert(stored, seconds, max((len(c) for c in chunks), default=0))
