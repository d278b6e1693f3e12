"""Raising alerts: one row per (rule, device, key) while unresolved, with a count.

``record_alert_matches`` is called inside the transaction that stores the matching
events (the ingest writer) or by the periodic state checks (agent offline or too
old): a match either grows the unresolved alert of its (rule, device, key) — count,
newest time, up to ``ALERT_EVENTS_KEPT`` linked events — or opens a new one. Because
the alert is written in the same transaction as its events, an event is never stored
without its alert nor counted twice (a resent batch stores nothing, so matches
nothing). Two replicas opening the same alert at once are stopped by the partial
unique index ``ux_alerts_active``: the loser retries and grows the winner's row.

A new alert enters the notification outbox (``notified_us`` NULL); growing one does
not notify again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sekimori.server.store.schema import alert_events, alerts

__all__ = ["ALERT_EVENTS_KEPT", "AlertMatch", "RecordedAlerts", "record_alert_matches"]

# Matching events linked to one alert; the count goes on beyond.
ALERT_EVENTS_KEPT = 100
_INSERT_ATTEMPTS = 3


@dataclass(slots=True)
class AlertMatch:
    """One rule firing: on an event (``seq``), or on a device's state (``seq`` None).
    ``count``: how many events it stands for (a threshold's window, else 1)."""

    rule_id: str
    title: str
    severity: str
    device_id: str
    key: str
    time_us: int
    summary: str
    count: int = 1
    seq: int | None = None


@dataclass(slots=True)
class _Group:
    first: AlertMatch
    count: int = 0
    first_us: int = 0
    last_us: int = 0
    seqs: list[int] = field(default_factory=list)


@dataclass(slots=True)
class RecordedAlerts:
    created: list[int] = field(default_factory=list)
    grown: list[int] = field(default_factory=list)
    # (alert id, device id, rule id) of each alert opened.
    opened: list[tuple[int, str, str]] = field(default_factory=list)


def record_alert_matches(
    conn: sa.Connection, matches: Sequence[AlertMatch], *, now_us: int
) -> RecordedAlerts:
    """Open or grow the alerts for ``matches``; returns the ids created and grown."""
    groups: dict[tuple[str, str, str], _Group] = {}
    for match in matches:
        ident = (match.rule_id, match.device_id, match.key)
        group = groups.get(ident)
        if group is None:
            group = groups[ident] = _Group(match, 0, match.time_us, match.time_us)
        group.count += match.count
        group.first_us = min(group.first_us, match.time_us)
        group.last_us = max(group.last_us, match.time_us)
        if match.seq is not None and len(group.seqs) < ALERT_EVENTS_KEPT:
            group.seqs.append(match.seq)
    result = RecordedAlerts()
    active = _active_many(conn, groups)
    grow: list[dict[str, int]] = []
    links: list[dict[str, object]] = []
    # Sorted: writers on PostgreSQL take row locks in one order.
    for ident in sorted(groups):
        group = groups[ident]
        found = active.get(ident)
        if found is not None:
            alert_id, count = found
            grow.append(
                {
                    "b_id": alert_id,
                    "b_count": group.count,
                    "b_first": group.first_us,
                    "b_last": group.last_us,
                    "b_now": now_us,
                }
            )
            kept, created = min(count, ALERT_EVENTS_KEPT), False
        else:
            alert_id, kept, created = _open_or_grow(conn, ident, group, now_us)
        (result.created if created else result.grown).append(alert_id)
        if created:
            result.opened.append((alert_id, ident[1], ident[0]))
        room = ALERT_EVENTS_KEPT - kept
        links.extend(
            {"alert_id": alert_id, "device_id": ident[1], "seq": seq}
            for seq in group.seqs[: max(room, 0)]
        )
    if grow:
        conn.execute(_GROW, grow)
    if links:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(insert(alert_events).on_conflict_do_nothing(), links)
    return result


# Growing an unresolved alert: one executemany for all of a transaction's alerts.
_GROW = (
    sa.update(alerts)
    .where(alerts.c.id == sa.bindparam("b_id"))
    .values(
        count=alerts.c.count + sa.bindparam("b_count"),
        first_us=sa.case(
            (alerts.c.first_us > sa.bindparam("b_first"), sa.bindparam("b_first")),
            else_=alerts.c.first_us,
        ),
        last_us=sa.case(
            (alerts.c.last_us < sa.bindparam("b_last"), sa.bindparam("b_last")),
            else_=alerts.c.last_us,
        ),
        updated_us=sa.bindparam("b_now"),
    )
)


def _active_many(
    conn: sa.Connection, groups: dict[tuple[str, str, str], _Group]
) -> dict[tuple[str, str, str], tuple[int, int]]:
    """The unresolved alerts among ``groups``' (rule, device, key): one query (by
    device, then filtered here) instead of one per alert."""
    device_ids = sorted({ident[1] for ident in groups})
    found: dict[tuple[str, str, str], tuple[int, int]] = {}
    for start in range(0, len(device_ids), 500):
        query = (
            sa.select(
                alerts.c.id, alerts.c.rule_id, alerts.c.device_id, alerts.c.key, alerts.c.count
            )
            .where(
                alerts.c.device_id.in_(device_ids[start : start + 500]),
                alerts.c.status != sa.literal_column("'resolved'"),
            )
            .order_by(alerts.c.id)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for row in conn.execute(query):
            ident = (str(row[1]), str(row[2]), str(row[3]))
            if ident in groups:
                found[ident] = (int(row[0]), int(row[4]))
    return found


def _open_or_grow(
    conn: sa.Connection, ident: tuple[str, str, str], group: _Group, now_us: int
) -> tuple[int, int, bool]:
    """Open the alert of ``ident`` (none was unresolved when looked up); if another
    writer opened it meanwhile, grow that one. Returns (id, events linked before,
    created?)."""
    first = group.first
    for _ in range(_INSERT_ATTEMPTS):
        # SQLite has one writer at a time: no other can open it meanwhile, and a
        # savepoint per new alert would cost more than the insert.
        nested = conn.begin_nested() if conn.dialect.name != "sqlite" else contextlib.nullcontext()
        try:
            with nested:
                alert_id = conn.execute(
                    sa.insert(alerts)
                    .values(
                        rule_id=first.rule_id,
                        title=first.title[:256],
                        severity=first.severity,
                        device_id=first.device_id,
                        key=first.key[:512],
                        status="open",
                        count=group.count,
                        first_us=group.first_us,
                        last_us=group.last_us,
                        created_us=now_us,
                        updated_us=now_us,
                        summary=first.summary[:2000],
                        notify_attempts=0,
                        notify_after_us=now_us,
                    )
                    .returning(alerts.c.id)
                ).scalar_one()
            return int(alert_id), 0, True
        except sa.exc.IntegrityError:
            pass  # another writer opened it meanwhile: grow that one
        found = _active_many(conn, {ident: group}).get(ident)
        if found is not None:
            alert_id, count = found
            conn.execute(
                _GROW,
                {
                    "b_id": alert_id,
                    "b_count": group.count,
                    "b_first": group.first_us,
                    "b_last": group.last_us,
                    "b_now": now_us,
                },
            )
            return alert_id, min(count, ALERT_EVENTS_KEPT), False
    raise RuntimeError(f"could not open or grow the alert for {ident!r}")
