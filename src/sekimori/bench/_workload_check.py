"""Checking what the agent-workload bench produced against what the server stored.

Every process start and stop, file operation, focus change and page visit the
workload made must be found in the store, matched by its own fields (command line and
pid, path, xterm title in order, URL); ``compare`` says what is missing.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sekimori.server.store.schema import events as events_table

__all__ = [
    "Check",
    "Produced",
    "Row",
    "background_starts",
    "chromium_history",
    "collector_health",
    "compare",
    "kinds_between",
    "stored",
]


@dataclass
class Produced:
    """What the workload did, for comparison with what the store holds."""

    spawned: list[tuple[str, int]] = field(default_factory=list)  # (argv[0] tag, pid)
    created: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    focused: list[str] = field(default_factory=list)  # xterm titles, in order
    visited: list[str] = field(default_factory=list)  # URLs, in order


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    time_us: int
    payload: dict[str, Any]


_CHECKED_KINDS = (
    "process.started",
    "process.stopped",
    "file.created",
    "file.modified",
    "file.moved",
    "file.deleted",
    "window.focus",
    "web.visit",
)


def stored(engine: sa.Engine, device_id: str, since_us: int) -> list[Row]:
    query = (
        sa.select(events_table.c.kind, events_table.c.time_us, events_table.c.payload)
        .where(
            events_table.c.device_id == device_id,
            events_table.c.time_us >= since_us,
            events_table.c.kind.in_(_CHECKED_KINDS),
        )
        .order_by(events_table.c.time_us, events_table.c.seq)
    )
    with engine.connect() as conn:
        return [
            Row(kind, time_us, json.loads(payload))
            for kind, time_us, payload in conn.execute(query)
        ]


@dataclass(frozen=True, slots=True)
class Check:
    """One kind of produced event: how many there were, and which were not recorded."""

    name: str
    produced: int
    missing: list[str]
    extra: int = 0  # recorded events of this kind the workload did not directly cause

    @property
    def recorded(self) -> int:
        return self.produced - len(self.missing)


def _in_order(wanted: list[str], seen: list[str]) -> list[str]:
    """The items of ``wanted`` not found in ``seen`` as an ordered subsequence."""
    missing: list[str] = []
    position = 0
    for n, item in enumerate(wanted):
        try:
            position = seen.index(item, position) + 1
        except ValueError:
            missing.append(f"#{n} {item}")
    return missing


def compare(produced: Produced, rows: list[Row], window_start_us: int) -> list[Check]:
    """Match what the workload produced against the stored rows."""
    by_kind: dict[str, list[Row]] = {kind: [] for kind in _CHECKED_KINDS}
    for row in rows:
        by_kind[row.kind].append(row)
    # (argv[0], pid) -> start time: pids are reused (pid_max may be 32768), a
    # process's (pid, start time) is not.
    started = {
        (str(r.payload["argv"][0]), int(r.payload["pid"])): int(r.payload["start_time_us"])
        for r in by_kind["process.started"]
        if r.payload.get("argv")
    }
    stopped = {
        (int(r.payload["pid"]), int(r.payload["start_time_us"])) for r in by_kind["process.stopped"]
    }
    created = {str(r.payload["path"]) for r in by_kind["file.created"]}
    modified = {str(r.payload["path"]) for r in by_kind["file.modified"]}
    moved = {(str(r.payload["src"]), str(r.payload["dest"])) for r in by_kind["file.moved"]}
    deleted = {str(r.payload["path"]) for r in by_kind["file.deleted"]}
    focus = [
        str(r.payload["window"]["title"])
        for r in by_kind["window.focus"]
        if r.time_us >= window_start_us
        and r.payload.get("cause") == "focus"
        and r.payload.get("window") is not None
    ]
    visited = {str(r.payload["url"]) for r in by_kind["web.visit"]}
    spawned = produced.spawned
    ended = [(tag, pid) for tag, pid in spawned if (pid, started.get((tag, pid), -1)) in stopped]
    return [
        Check(
            "process starts",
            len(spawned),
            [f"{tag} (pid {pid})" for tag, pid in spawned if (tag, pid) not in started],
            extra=len(by_kind["process.started"]) - sum(1 for s in spawned if s in started),
        ),
        Check(
            "process stops",
            len(spawned),
            [f"{tag} (pid {pid})" for tag, pid in spawned if (tag, pid) not in ended],
            extra=len(by_kind["process.stopped"]) - len(ended),
        ),
        Check("file creations", len(produced.created), _absent(produced.created, created)),
        Check("file writes", len(produced.modified), _absent(produced.modified, modified)),
        Check(
            "file renames",
            len(produced.moved),
            [f"{a} -> {b}" for a, b in produced.moved if (a, b) not in moved],
        ),
        Check("file deletions", len(produced.deleted), _absent(produced.deleted, deleted)),
        Check(
            "focus changes",
            len(produced.focused),
            _in_order(produced.focused, focus),
            extra=max(0, len(focus) - len(produced.focused)),
        ),
        Check("page visits", len(produced.visited), _absent(produced.visited, visited)),
    ]


def background_starts(rows: list[Row], produced: Produced, end_us: int) -> Counter[str]:
    """Process starts in the window that the churn did not spawn, by executable name:
    the workload's own helpers (xdotool, xprop, Chromium's), and the machine's."""
    spawned = {pid for _, pid in produced.spawned}
    return Counter(
        Path(str(r.payload.get("exe") or r.payload.get("name") or "?")).name
        for r in rows
        if r.kind == "process.started" and r.time_us < end_us and r.payload["pid"] not in spawned
    )


def _absent(wanted: list[str], seen: set[str]) -> list[str]:
    return [item for item in wanted if item not in seen]


def collector_health(engine: sa.Engine, device_id: str) -> dict[str, tuple[str, str]]:
    """The last reported status (and reason) of each collector."""
    query = (
        sa.select(events_table.c.payload)
        .where(
            events_table.c.device_id == device_id,
            events_table.c.kind == "agent.collector_health",
        )
        .order_by(events_table.c.seq)
    )
    status: dict[str, tuple[str, str]] = {}
    with engine.connect() as conn:
        for (payload,) in conn.execute(query):
            health = json.loads(payload)
            status[health["collector"]] = (health["status"], health.get("reason", ""))
    return status


def kinds_between(engine: sa.Engine, device_id: str, start_us: int, end_us: int) -> Counter[str]:
    query = (
        sa.select(events_table.c.kind, sa.func.count())
        .where(
            events_table.c.device_id == device_id,
            events_table.c.time_us >= start_us,
            events_table.c.time_us < end_us,
        )
        .group_by(events_table.c.kind)
    )
    with engine.connect() as conn:
        return Counter({str(kind): int(count) for kind, count in conn.execute(query)})


def chromium_history(history: Path) -> set[str]:
    """The URLs Chromium itself recorded (read after it quit)."""
    try:
        db = sqlite3.connect(f"{history.as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return set()
    try:
        rows = db.execute("SELECT u.url FROM visits v JOIN urls u ON u.id = v.url")
        return {str(url) for (url,) in rows}
    except sqlite3.Error:
        return set()
    finally:
        db.close()


# ---- the run ---------------------------------------------------------------------------
