"""The agent's durable outbox: every event is written here before it is sent.

An event leaves the outbox only when the server acknowledges it (``ack_through``),
and the server acknowledges only after its commit, so a crash of either side loses
nothing. Sequence numbers come from SQLite's AUTOINCREMENT, which never reuses a
number even after rows are deleted: the server deduplicates on (device, seq).

The outbox is bounded: when the stored events exceed ``max_bytes``, the oldest are
dropped and an ``agent.outbox_dropped`` event records how many.

Thread-safe: collectors append from their own threads while the channel reads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from sekimori.clock import now_us
from sekimori.protocol.events import Event, OutboxDropped, Payload

__all__ = ["Outbox", "OutboxStats", "PendingEvent"]

# Rough per-row cost beyond the payload (seq, time, kind, user, b-tree overhead),
# so that a flood of tiny events is bounded too.
_ROW_OVERHEAD = 48

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    os_user TEXT,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""

_encoder = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event to append: its payload is a typed struct or already-encoded msgpack."""

    kind: str
    payload: Payload | bytes
    os_user: str | None = None
    time_us: int | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    events: int
    bytes: int
    dropped_total: int
    last_seq: int


class Outbox:
    """A bounded, durable FIFO of events keyed by sequence number."""

    def __init__(self, path: str | Path, *, max_bytes: int) -> None:
        self._path = Path(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        # WAL + synchronous=NORMAL: a committed append survives the agent being killed;
        # only an OS crash can lose the last few milliseconds.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
        self._events: int = row[0]
        self._bytes: int = row[1] + row[0] * _ROW_OVERHEAD
        self._dropped_total = self._meta("dropped_total")
        self._listeners: list[Callable[[], object]] = []

    # ---- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def on_append(self, listener: Callable[[], object]) -> None:
        """Call ``listener`` (from the appending thread) after every append."""
        self._listeners.append(listener)

    # ---- writing -----------------------------------------------------------------

    def append(
        self,
        kind: str,
        payload: Payload | bytes,
        *,
        os_user: str | None = None,
        time_us: int | None = None,
    ) -> int:
        """Store one event durably and return its sequence number."""
        return self.append_many([PendingEvent(kind, payload, os_user, time_us)])[-1]

    def append_many(
        self, events: Iterable[PendingEvent], *, cursor: tuple[str, bytes] | None = None
    ) -> list[int]:
        """Store events in one transaction; returns their sequence numbers.

        ``cursor`` (name, value) is saved in the same transaction: a collector that
        records "what I have reported so far" with its events can neither lose nor
        repeat events across a crash.
        """
        stamp = now_us()
        rows: list[tuple[int, str, str | None, bytes]] = [
            (
                e.time_us if e.time_us is not None else stamp,
                e.kind,
                e.os_user,
                e.payload if isinstance(e.payload, bytes) else _encoder.encode(e.payload),
            )
            for e in events
        ]
        if not rows:
            if cursor is not None:
                self.save_cursor(*cursor)
            return []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if cursor is not None:
                    self._save_cursor_locked(*cursor)
                self._db.executemany(
                    "INSERT INTO outbox (time_us, kind, os_user, payload) VALUES (?,?,?,?)", rows
                )
                # AUTOINCREMENT under our exclusive lock: the new rows are consecutive
                # and end at the table's sequence counter.
                last = self._db.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
                ).fetchone()[0]
                seqs = list(range(last - len(rows) + 1, last + 1))
                added = sum(len(r[3]) + _ROW_OVERHEAD for r in rows)
                self._events += len(rows)
                self._bytes += added
                if self._bytes > self._max_bytes:
                    self._drop_oldest_locked()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._recount_locked()
                raise
        for listener in self._listeners:
            listener()
        return seqs

    def _drop_oldest_locked(self) -> None:
        """Drop the oldest events until the outbox is at 90% of its bound.

        Called inside the append transaction, so the drop and its record commit
        together with the events that caused it.
        """
        target = int(self._max_bytes * 0.9)
        to_free = self._bytes - target
        freed = 0
        last = 0
        first = 0
        count = 0
        cursor = self._db.execute("SELECT seq, length(payload) FROM outbox ORDER BY seq")
        for seq, size in cursor:
            if freed >= to_free:
                break
            if count == 0:
                first = seq
            freed += size + _ROW_OVERHEAD
            last = seq
            count += 1
        cursor.close()
        if count == 0:
            return
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (last,))
        record = _encoder.encode(
            OutboxDropped(count=count, first_seq=first, last_seq=last, bytes=freed)
        )
        self._db.execute(
            "INSERT INTO outbox (time_us, kind, os_user, payload) VALUES (?,?,?,?)",
            (now_us(), "agent.outbox_dropped", None, record),
        )
        self._dropped_total += count
        self._db.execute(
            "INSERT INTO outbox_meta(key, value) VALUES ('dropped_total', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (self._dropped_total,),
        )
        self._events += 1 - count
        self._bytes += len(record) + _ROW_OVERHEAD - freed

    # ---- reading and acknowledging -------------------------------------------------

    def peek(self, after_seq: int, *, max_events: int, max_bytes: int) -> list[Event]:
        """The oldest events with seq > after_seq, at most max_events / ~max_bytes."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT seq, time_us, kind, os_user, payload FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, max_events),
            )
            out: list[Event] = []
            size = 0
            for seq, time_us, kind, os_user, payload in cursor:
                size += len(payload) + 32
                if out and size > max_bytes:
                    break
                out.append(Event(seq, time_us, kind, os_user, msgspec.Raw(payload)))
            cursor.close()
            return out

    def ack_through(self, seq: int) -> int:
        """Forget every event with sequence number <= seq; returns how many."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox WHERE seq <= ?",
                (seq,),
            ).fetchone()
            if row[0] == 0:
                return 0
            self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
            self._events -= row[0]
            self._bytes -= row[1] + row[0] * _ROW_OVERHEAD
            return int(row[0])

    def cursor(self, name: str) -> bytes | None:
        """The value last saved under ``name`` (see append_many), or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
            return bytes(row[0]) if row else None

    def save_cursor(self, name: str, value: bytes) -> None:
        with self._lock:
            self._save_cursor_locked(name, value)

    def _save_cursor_locked(self, name: str, value: bytes) -> None:
        self._db.execute(
            "INSERT INTO cursors(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def stats(self) -> OutboxStats:
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"
            ).fetchone()
            return OutboxStats(
                events=self._events,
                bytes=self._bytes,
                dropped_total=self._dropped_total,
                last_seq=row[0] if row else 0,
            )

    # ---- internals ---------------------------------------------------------------

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM outbox_meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _recount_locked(self) -> None:
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
        self._events = row[0]
        self._bytes = row[1] + row[0] * _ROW_OVERHEAD
        self._dropped_total = self._meta("dropped_total")
