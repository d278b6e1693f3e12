"""Alerts in the console: the list and its filters, one alert with its matching events
and history, and handling it (acknowledge, resolve, reopen, assign, comment).

Every read joins the alert's device and applies the user's scope in SQL: an alert of
a device outside the scope is answered exactly like one that does not exist. Changes
are conditional UPDATEs (``WHERE status = <the status the user saw>``), so two people
acting on one alert at once cannot both win; each change adds a row to the alert's
history (``alert_comments``) in the same transaction.

An alert's life::

    open ──acknowledge──▶ acknowledged ──resolve──▶ resolved
      │                        │                       │
      └──────────resolve───────┼───────────────────────┘
      ◀────────reopen──────────┴──────reopen───────────┘

A resolved alert can be reopened only while no newer alert of the same rule, device
and key is open (the partial unique index ``ux_alerts_active`` allows one): the
newer one is where matching events now go.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal

import sqlalchemy as sa

from sekimori.server.store.schema import (
    alert_comments,
    alert_events,
    alerts,
    devices,
    events,
    groups,
    user_groups,
    users,
)
from sekimori.server.store.scope import Scope

__all__ = [
    "ACTIONS",
    "ACTIVE",
    "ALERTS_PER_PAGE",
    "COMMENT_MAX",
    "EVENTS_SHOWN",
    "MAX_PAGE",
    "SEVERITIES",
    "STATUSES",
    "Alert",
    "AlertEvent",
    "AlertList",
    "AlertQuery",
    "ChangeResult",
    "HistoryEntry",
    "Status",
    "add_comment",
    "alert_events_of",
    "alert_history",
    "assign_alert",
    "assignable_users",
    "device_open_alerts",
    "get_alert",
    "latest_open_alerts",
    "open_counts",
    "rule_choices",
    "search_alerts",
    "set_status",
]

Status = Literal["open", "acknowledged", "resolved"]
STATUSES: Final[tuple[Status, ...]] = ("open", "acknowledged", "resolved")
# The list's default: everything not yet resolved.
ACTIVE: Final[tuple[Status, ...]] = ("open", "acknowledged")
SEVERITIES: Final = ("critical", "high", "medium", "low", "info")
ALERTS_PER_PAGE: Final = 50
# Offset paging stops here; past it the list must be narrowed.
MAX_PAGE: Final = 200
EVENTS_SHOWN: Final = 100
COMMENT_MAX: Final = 4000

# Which status each action leads to, and from which statuses it may be taken.
_TRANSITIONS: Final[dict[str, tuple[Status, tuple[Status, ...]]]] = {
    "acknowledge": ("acknowledged", ("open",)),
    "resolve": ("resolved", ("open", "acknowledged")),
    "reopen": ("open", ("acknowledged", "resolved")),
}
ACTIONS: Final = tuple(_TRANSITIONS)

ChangeResult = Literal["ok", "unchanged", "not_allowed", "conflict", "not_eligible", "too_long"]


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    rule_id: str
    title: str
    severity: str
    device_id: str
    hostname: str
    group: str
    key: str
    status: Status
    count: int
    first_us: int
    last_us: int
    created_us: int
    updated_us: int
    summary: str
    assignee: str | None
    resolved_us: int | None


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """The list's filters as in the URL. ``statuses`` empty: every status."""

    statuses: tuple[Status, ...] = ACTIVE
    severity: str = ""
    rule: str = ""
    # A device id, or part of a host name.
    device: str = ""
    # A user name; "-" for alerts nobody is assigned to.
    assignee: str = ""
    q: str = ""
    since_us: int | None = None
    until_us: int | None = None
    page: int = 1


@dataclass(frozen=True, slots=True)
class AlertList:
    alerts: list[Alert]
    page: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class AlertEvent:
    device_id: str
    seq: int
    time_us: int
    kind: str
    os_user: str | None
    payload: str
    tag: str | None
    subject: str | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: int
    created_us: int
    author: str
    # comment | status | assign
    action: str
    body: str


def _select() -> sa.Select[tuple[object, ...]]:
    return sa.select(
        alerts.c.id,
        alerts.c.rule_id,
        alerts.c.title,
        alerts.c.severity,
        alerts.c.device_id,
        devices.c.hostname,
        groups.c.name.label("group"),
        alerts.c.key,
        alerts.c.status,
        alerts.c.count,
        alerts.c.first_us,
        alerts.c.last_us,
        alerts.c.created_us,
        alerts.c.updated_us,
        alerts.c.summary,
        alerts.c.assignee,
        alerts.c.resolved_us,
    ).select_from(
        alerts.join(devices, devices.c.id == alerts.c.device_id).join(
            groups, groups.c.id == devices.c.group_id
        )
    )


def _alert(row: sa.Row[tuple[object, ...]]) -> Alert:
    return Alert(**row._asdict())


def _where(query: AlertQuery, scope: Scope) -> list[sa.ColumnElement[bool]]:
    where = [scope.device_filter()]
    if query.statuses:
        where.append(alerts.c.status.in_(list(query.statuses)))
    if query.severity:
        where.append(alerts.c.severity == query.severity)
    if query.rule:
        where.append(alerts.c.rule_id == query.rule)
    if query.device:
        where.append(
            sa.or_(
                alerts.c.device_id == query.device,
                devices.c.hostname.icontains(query.device, autoescape=True),
            )
        )
    if query.assignee == "-":
        where.append(alerts.c.assignee.is_(None))
    elif query.assignee:
        where.append(alerts.c.assignee == query.assignee)
    if query.q:
        where.append(
            sa.or_(
                alerts.c.title.icontains(query.q, autoescape=True),
                alerts.c.summary.icontains(query.q, autoescape=True),
            )
        )
    if query.since_us is not None:
        where.append(alerts.c.last_us >= query.since_us)
    if query.until_us is not None:
        where.append(alerts.c.last_us < query.until_us)
    return where


def search_alerts(
    engine: sa.Engine, scope: Scope, query: AlertQuery, per_page: int = ALERTS_PER_PAGE
) -> AlertList:
    """One page of the alerts matching ``query`` within ``scope``, the most recently
    matched first. No count: whether a next page exists comes from one extra row."""
    page = min(max(1, query.page), MAX_PAGE)
    with engine.connect() as conn:
        rows = conn.execute(
            _select()
            .where(*_where(query, scope))
            .order_by(alerts.c.last_us.desc(), alerts.c.id.desc())
            .limit(per_page + 1)
            .offset((page - 1) * per_page)
        ).all()
    return AlertList([_alert(r) for r in rows[:per_page]], page, len(rows) > per_page)


def get_alert(engine: sa.Engine, scope: Scope, alert_id: int) -> Alert | None:
    """The alert, or None when there is none or its device lies outside ``scope``."""
    with engine.connect() as conn:
        row = conn.execute(_select().where(alerts.c.id == alert_id, scope.device_filter())).first()
    return _alert(row) if row else None


def alert_events_of(alert: Alert, engine: sa.Engine, limit: int = EVENTS_SHOWN) -> list[AlertEvent]:
    """The alert's linked matching events, oldest first (``alert`` comes from
    ``get_alert``, which checked the scope)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                events.c.device_id,
                events.c.seq,
                events.c.time_us,
                events.c.kind,
                events.c.os_user,
                events.c.payload,
                events.c.tag,
                events.c.subject,
            )
            .select_from(
                alert_events.join(
                    events,
                    sa.and_(
                        events.c.device_id == alert_events.c.device_id,
                        events.c.seq == alert_events.c.seq,
                    ),
                )
            )
            .where(alert_events.c.alert_id == alert.id)
            .order_by(events.c.time_us, events.c.seq)
            .limit(limit)
        ).all()
    return [AlertEvent(**r._asdict()) for r in rows]


def alert_history(engine: sa.Engine, alert: Alert) -> list[HistoryEntry]:
    """Comments, status changes and assignments, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                alert_comments.c.id,
                alert_comments.c.created_us,
                alert_comments.c.author,
                alert_comments.c.action,
                alert_comments.c.body,
            )
            .where(alert_comments.c.alert_id == alert.id)
            .order_by(alert_comments.c.id)
        ).all()
    return [HistoryEntry(**r._asdict()) for r in rows]


def _history(
    conn: sa.Connection, alert_id: int, *, author: str, action: str, body: str, now_us: int
) -> None:
    conn.execute(
        sa.insert(alert_comments).values(
            alert_id=alert_id, created_us=now_us, author=author, action=action, body=body
        )
    )


def set_status(
    engine: sa.Engine, alert: Alert, action: str, *, author: str, now_us: int
) -> ChangeResult:
    """Acknowledge, resolve or reopen ``alert`` as it was read (its ``status``).

    Returns "ok"; "not_allowed" when the action does not apply to the status;
    "unchanged" when someone changed the status meanwhile; "conflict" when reopening
    while a newer alert of the same rule, device and key is open."""
    if action not in _TRANSITIONS:
        return "not_allowed"
    new, allowed_from = _TRANSITIONS[action]
    if alert.status not in allowed_from:
        return "not_allowed"
    try:
        with engine.begin() as conn:
            changed = conn.execute(
                sa.update(alerts)
                .where(alerts.c.id == alert.id, alerts.c.status == alert.status)
                .values(
                    status=new,
                    updated_us=now_us,
                    resolved_us=now_us if new == "resolved" else None,
                )
            ).rowcount
            if changed != 1:
                return "unchanged"
            _history(conn, alert.id, author=author, action="status", body=new, now_us=now_us)
    except sa.exc.IntegrityError:
        return "conflict"
    return "ok"


def assignable_users(engine: sa.Engine, device_id: str, roles: Collection[str]) -> list[str]:
    """User names that may handle an alert of ``device_id``: enabled, with one of
    ``roles`` (those holding the alerts permission), and seeing the device's group."""
    group_of_device = sa.select(devices.c.group_id).where(devices.c.id == device_id)
    member = sa.exists().where(
        user_groups.c.user_id == users.c.id,
        user_groups.c.group_id.in_(group_of_device.scalar_subquery()),
    )
    with engine.connect() as conn:
        return [
            str(name)
            for name in conn.execute(
                sa.select(users.c.username)
                .where(
                    users.c.role.in_(sorted(roles)),
                    users.c.disabled.is_(False),
                    sa.or_(users.c.all_groups.is_(True), member),
                )
                .order_by(users.c.username)
            ).scalars()
        ]


def assign_alert(
    engine: sa.Engine,
    alert: Alert,
    assignee: str | None,
    *,
    author: str,
    roles: Collection[str],
    now_us: int,
) -> ChangeResult:
    """Give ``alert`` to ``assignee`` (None: to nobody). "not_eligible" when that user
    may not handle alerts of this device; "unchanged" when already so."""
    if assignee is not None and assignee not in assignable_users(engine, alert.device_id, roles):
        return "not_eligible"
    with engine.begin() as conn:
        current = conn.execute(
            sa.select(alerts.c.assignee).where(alerts.c.id == alert.id)
        ).scalar_one_or_none()
        if current == assignee:
            return "unchanged"
        conn.execute(
            sa.update(alerts)
            .where(alerts.c.id == alert.id)
            .values(assignee=assignee, updated_us=now_us)
        )
        _history(conn, alert.id, author=author, action="assign", body=assignee or "", now_us=now_us)
    return "ok"


def add_comment(
    engine: sa.Engine, alert: Alert, body: str, *, author: str, now_us: int
) -> ChangeResult:
    """Add a comment (at most ``COMMENT_MAX`` characters; blank: "unchanged")."""
    body = body.strip()
    if not body:
        return "unchanged"
    if len(body) > COMMENT_MAX:
        return "too_long"
    with engine.begin() as conn:
        _history(conn, alert.id, author=author, action="comment", body=body, now_us=now_us)
        conn.execute(sa.update(alerts).where(alerts.c.id == alert.id).values(updated_us=now_us))
    return "ok"


def open_counts(engine: sa.Engine, scope: Scope) -> dict[str, int]:
    """How many alerts are open (not yet acknowledged), by severity, within
    ``scope``; every severity is present. Reads ``ix_alerts_status_last``."""
    counts = dict.fromkeys(SEVERITIES, 0)
    query = (
        sa.select(alerts.c.severity, sa.func.count())
        .where(alerts.c.status == "open")
        .group_by(alerts.c.severity)
    )
    if not scope.all_groups:
        query = query.where(alerts.c.device_id.in_(scope.device_ids()))
    with engine.connect() as conn:
        for severity, n in conn.execute(query):
            counts[str(severity)] = counts.get(str(severity), 0) + int(n)
    return counts


def latest_open_alerts(engine: sa.Engine, scope: Scope, limit: int = 5) -> list[Alert]:
    """The most recently matched open alerts within ``scope``."""
    with engine.connect() as conn:
        rows = conn.execute(
            _select()
            .where(alerts.c.status == "open", scope.device_filter())
            .order_by(alerts.c.last_us.desc(), alerts.c.id.desc())
            .limit(limit)
        ).all()
    return [_alert(r) for r in rows]


def device_open_alerts(
    engine: sa.Engine, scope: Scope, device_id: str, limit: int = 20
) -> list[Alert]:
    """The device's unresolved alerts (open or acknowledged), newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            _select()
            .where(
                alerts.c.device_id == device_id,
                alerts.c.status.in_(list(ACTIVE)),
                scope.device_filter(),
            )
            .order_by(alerts.c.last_us.desc(), alerts.c.id.desc())
            .limit(limit)
        ).all()
    return [_alert(r) for r in rows]


def rule_choices(engine: sa.Engine, scope: Scope) -> list[tuple[str, str]]:
    """(rule id, title) of the rules that raised alerts within ``scope``, for the
    list's rule filter."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alerts.c.rule_id, sa.func.max(alerts.c.title))
            .select_from(alerts.join(devices, devices.c.id == alerts.c.device_id))
            .where(scope.device_filter())
            .group_by(alerts.c.rule_id)
            .order_by(alerts.c.rule_id)
        ).all()
    return [(str(r[0]), str(r[1])) for r in rows]
