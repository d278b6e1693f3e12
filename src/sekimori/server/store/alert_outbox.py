"""The alerts' notification outbox: which alerts are due, claiming one, and its outcome.

A new alert is due at once (``notified_us`` NULL, ``notify_after_us`` its creation
time; partial index ``ix_alerts_notify``). A worker claims a due alert with a
compare-and-set on ``notify_after_us`` (Healthchecks' sendalerts pattern): the UPDATE
pushes the time forward by a lease and succeeds only if nobody moved it since the
worker read it, so two replicas never send the same alert, and a worker that dies
mid-send leaves the alert to be retried when the lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.store.schema import alert_comments, alerts, devices, groups

__all__ = [
    "NOTIFY_AUTHOR",
    "DueAlert",
    "claim_alert",
    "due_alerts",
    "mark_notified",
    "schedule_retry",
]

# The author of the history entries the notifier writes on an alert.
NOTIFY_AUTHOR = "system:notify"


@dataclass(frozen=True, slots=True)
class DueAlert:
    id: int
    rule_id: str
    title: str
    severity: str
    device_id: str
    hostname: str
    group: str
    count: int
    first_us: int
    last_us: int
    summary: str
    notify_attempts: int
    notify_after_us: int


def due_alerts(engine: sa.Engine, *, now_us: int, limit: int) -> list[DueAlert]:
    """Alerts not yet notified whose time has come, oldest first."""
    query = (
        sa.select(
            alerts.c.id,
            alerts.c.rule_id,
            alerts.c.title,
            alerts.c.severity,
            alerts.c.device_id,
            sa.func.coalesce(devices.c.hostname, alerts.c.device_id).label("hostname"),
            sa.func.coalesce(groups.c.name, "").label("group"),
            alerts.c.count.label("alert_count"),
            alerts.c.first_us,
            alerts.c.last_us,
            alerts.c.summary,
            alerts.c.notify_attempts,
            alerts.c.notify_after_us,
        )
        .select_from(
            alerts.outerjoin(devices, devices.c.id == alerts.c.device_id).outerjoin(
                groups, groups.c.id == devices.c.group_id
            )
        )
        .where(alerts.c.notified_us.is_(None), alerts.c.notify_after_us <= now_us)
        .order_by(alerts.c.notify_after_us, alerts.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            DueAlert(
                id=int(r.id),
                rule_id=str(r.rule_id),
                title=str(r.title),
                severity=str(r.severity),
                device_id=str(r.device_id),
                hostname=str(r.hostname),
                group=str(r.group),
                count=int(r.alert_count),
                first_us=int(r.first_us),
                last_us=int(r.last_us),
                summary=str(r.summary),
                notify_attempts=int(r.notify_attempts),
                notify_after_us=int(r.notify_after_us),
            )
            for r in conn.execute(query)
        ]


def claim_alert(engine: sa.Engine, alert: DueAlert, *, until_us: int) -> bool:
    """Claim ``alert`` until ``until_us``; False if another worker claimed or finished
    it since it was read (its ``notify_after_us`` moved or it was notified)."""
    with engine.begin() as conn:
        claimed = conn.execute(
            sa.update(alerts)
            .where(
                alerts.c.id == alert.id,
                alerts.c.notified_us.is_(None),
                alerts.c.notify_after_us == alert.notify_after_us,
            )
            .values(notify_after_us=until_us)
        ).rowcount
    return bool(claimed == 1)


def mark_notified(
    engine: sa.Engine, alert_id: int, *, now_us: int, attempts: int, notes: Sequence[str] = ()
) -> None:
    """Done with ``alert_id`` (sent, nothing to send, or given up); each of ``notes``
    becomes an entry in the alert's history (a failed target, the reason)."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.notified_us.is_(None))
            .values(notified_us=now_us, notify_attempts=attempts)
        )
        _add_notes(conn, alert_id, now_us, notes)


def schedule_retry(
    engine: sa.Engine,
    alert_id: int,
    *,
    now_us: int,
    after_us: int,
    attempts: int,
    notes: Sequence[str] = (),
) -> None:
    """Try ``alert_id`` again at ``after_us``; ``notes`` as for ``mark_notified``."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.notified_us.is_(None))
            .values(notify_after_us=after_us, notify_attempts=attempts)
        )
        _add_notes(conn, alert_id, now_us, notes)


def _add_notes(conn: sa.Connection, alert_id: int, now_us: int, notes: Sequence[str]) -> None:
    if notes:
        conn.execute(
            sa.insert(alert_comments),
            [
                {
                    "alert_id": alert_id,
                    "created_us": now_us,
                    "author": NOTIFY_AUTHOR,
                    "action": "comment",
                    "body": note,
                }
                for note in notes
            ],
        )
