"""Activity reports: web access, application time, logon hours, copies to removable
media, USB devices — aggregated in SQL over one kind's ``(kind, time_us)`` index
range, top-N limited, within the user's scope.

Local time: days and hours are those of the console's time zone, DST included.
SQLite has no time zones, so the store never asks the database for local time:
* days: the UTC instants of the local midnights in the range are computed here and
  a CASE maps each event time to its day (exact across DST changes);
* hours of the day: events are counted per UTC quarter hour (every zone's offset is
  a whole number of quarter hours) and each quarter is given its local hour here.

Without a device, OS user or text filter, the web and applications reports read the
rollups kept at ingest (``usage_hourly``, store/rollups.py) for the whole hours of
the range and the raw events only for the partial hours at its ends, so their cost
does not grow with the number of events. Hours map to local days and hours exactly
in zones whose offset is a whole number of hours (Asia/Tokyo, Europe/*, US zones). What
the rollups cannot hold (visited URLs, window titles, per-user rows) is shown only
with a device or user filter.

Payload fields are read with ``json_extract`` on SQLite and the JSONB operators on
PostgreSQL (the payload column is TEXT) through ``json_text``/``json_int``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sekimori.server.store.event_search import EventCriteria, event_conditions, hostnames
from sekimori.server.store.rollups import HOUR_US, hour_floor, rollup_columns
from sekimori.server.store.schema import devices, events, groups, usage_hourly
from sekimori.server.store.scope import Scope

__all__ = [
    "AppReport",
    "AppTime",
    "Count",
    "LogonDay",
    "RemovableCopy",
    "RemovableReport",
    "RemovableTotal",
    "UsbReport",
    "UsbSighting",
    "WebReport",
    "apps_report",
    "day_starts",
    "json_int",
    "json_text",
    "logons_report",
    "removable_report",
    "rolls_up",
    "usb_report",
    "web_report",
]

TOP = 20
ROWS = 200
_QUARTER_US = 900_000_000


# -- dialect helpers -------------------------------------------------------------


def json_text(dialect: str, column: sa.ColumnElement[Any], *path: str) -> sa.ColumnElement[str]:
    """The payload field at ``path`` as text (NULL when absent or null)."""
    if dialect == "postgresql":
        doc: sa.ColumnElement[Any] = sa.cast(column, postgresql.JSONB)
        for key in path[:-1]:
            doc = doc.op("->")(key)
        return doc.op("->>", return_type=sa.Text)(path[-1])
    return sa.func.json_extract(column, "$." + ".".join(path), type_=sa.Text)


def json_int(dialect: str, column: sa.ColumnElement[Any], *path: str) -> sa.ColumnElement[int]:
    """The payload field at ``path`` as an integer (NULL when absent or null)."""
    if dialect == "postgresql":
        return sa.cast(json_text(dialect, column, *path), sa.BigInteger)
    return sa.func.json_extract(column, "$." + ".".join(path), type_=sa.BigInteger)


def _first_word(dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """The text up to the first space (a web visit's subject is "URL title")."""
    if dialect == "postgresql":
        return sa.func.split_part(column, " ", 1, type_=sa.Text)
    return sa.func.substr(column, 1, sa.func.instr(column + " ", " ") - 1, type_=sa.Text)


def day_starts(zone: zoneinfo.ZoneInfo, since_us: int, until_us: int) -> list[dt.date]:
    """The local dates the range touches, first to last."""
    first = dt.datetime.fromtimestamp(since_us / 1e6, tz=zone).date()
    last = dt.datetime.fromtimestamp((until_us - 1) / 1e6, tz=zone).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _midnight_us(zone: zoneinfo.ZoneInfo, day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp() * 1_000_000)


def _day_index(
    zone: zoneinfo.ZoneInfo, criteria: EventCriteria
) -> tuple[sa.ColumnElement[int], list[dt.date]]:
    """A SQL expression giving each event's local day as an index into the list."""
    days = day_starts(zone, criteria.since_us, criteria.until_us)
    whens = [
        (events.c.time_us < _midnight_us(zone, day + dt.timedelta(days=1)), index)
        for index, day in enumerate(days[:-1])
    ]
    if not whens:
        return sa.literal(0, sa.Integer), days
    return sa.case(*whens, else_=len(days) - 1), days


def _kind(scope: Scope, criteria: EventCriteria, *kinds: str) -> list[sa.ColumnElement[bool]]:
    return event_conditions(scope, EventCriteria(**{**_as_dict(criteria), "kinds": kinds}))


def _as_dict(criteria: EventCriteria) -> dict[str, Any]:
    return {name: getattr(criteria, name) for name in EventCriteria.__slots__}


def _dialect(engine: sa.Engine) -> str:
    return engine.dialect.name


# -- rollups -----------------------------------------------------------------------


def rolls_up(criteria: EventCriteria, timezone: str) -> bool:
    """Whether the report can read the rollups: no device, user or text filter, and
    a zone whose offset is whole hours over the range (a UTC hour is one local hour;
    Asia/Kolkata's is not: such zones read the events)."""
    if criteria.device or criteria.user or criteria.text:
        return False
    zone = zoneinfo.ZoneInfo(timezone)
    return all(
        (offset := dt.datetime.fromtimestamp(t / 1e6, tz=zone).utcoffset()) is not None
        and offset.total_seconds() % 3600 == 0
        for t in (criteria.since_us, criteria.until_us)
    )


_Sums = dict[tuple[Any, ...], list[int]]


def _rollup_sums(
    conn: sa.Connection, scope: Scope, criteria: EventCriteria, kinds: tuple[str, ...], by: str
) -> _Sums:
    """(count, amount) of the events of ``kinds`` per ``by``: "key", "hour" or
    "group_key". Whole hours come from ``usage_hourly``, the partial hours at the
    ends of the range from the events (at most two hours of one kind)."""
    first = -(-criteria.since_us // HOUR_US) * HOUR_US
    last = hour_floor(criteria.until_us)
    sums: _Sums = {}

    def add(rows: Sequence[Any]) -> None:
        for row in rows:
            cell = sums.setdefault(tuple(row)[:-2], [0, 0])
            cell[0] += int(row[-2])
            cell[1] += int(row[-1] or 0)

    edges = [(criteria.since_us, criteria.until_us)]
    if first < last:
        edges = [(criteria.since_us, first), (last, criteria.until_us)]
        u = usage_hourly.c
        columns = {
            "key": [u.key],
            "hour": [u.hour_us],
            "group_key": [u.group_id, u.key],
            "hour_key": [u.hour_us, u.key],
        }[by]
        where = [
            u.kind.in_(kinds),
            u.hour_us >= first,
            u.hour_us < last,
            scope.device_filter(u.group_id),
        ]
        if criteria.group:
            where.append(
                u.group_id.in_(sa.select(groups.c.id).where(groups.c.name == criteria.group))
            )
        add(
            conn.execute(
                sa.select(*columns, sa.func.sum(u.count), sa.func.sum(u.amount))
                .where(*where)
                .group_by(*columns)
            ).all()
        )
    key, amount = rollup_columns(conn.dialect.name)
    hour = events.c.time_us - events.c.time_us % HOUR_US
    raw = {
        "key": [key],
        "hour": [hour],
        "group_key": [devices.c.group_id, key],
        "hour_key": [hour, key],
    }[by]
    for since, until in edges:
        if since >= until:
            continue
        part = EventCriteria(**{**_as_dict(criteria), "since_us": since, "until_us": until})
        add(
            conn.execute(
                sa.select(*raw, sa.func.count(), sa.func.sum(amount))
                .select_from(events.join(devices, devices.c.id == events.c.device_id))
                .where(*_kind(scope, part, *kinds))
                .group_by(*raw)
            ).all()
        )
    return sums


def _top(sums: _Sums, *, index: int, limit: int) -> list[tuple[tuple[Any, ...], list[int]]]:
    return sorted(sums.items(), key=lambda kv: (-kv[1][index], kv[0]))[:limit]


def _local_hours(sums: _Sums, zone: zoneinfo.ZoneInfo) -> list[int]:
    hours = [0] * 24
    for (hour_us,), (count, _) in sums.items():
        hours[dt.datetime.fromtimestamp(hour_us / 1e6, tz=zone).hour] += count
    return hours


# -- web -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Count:
    key: str
    count: int
    users: int = 0
    devices: int = 0
    who: str = ""


@dataclass(frozen=True, slots=True)
class WebReport:
    domains: list[Count]
    sites: list[Count]
    by_who: list[Count]
    hours: list[int]  # 24 visit counts, local hour of day 0..23
    total: int
    # From the rollups: no sites, no users/devices per domain, no per-user or
    # per-device rows (they need a device or user filter).
    rolled_up: bool = False


def web_report(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str, *, by: str = "user"
) -> WebReport:
    """Top domains and sites, top domains per ``by`` (user, device or group), and
    visits per local hour of the day."""
    if rolls_up(criteria, timezone):
        return _web_rolled_up(engine, scope, criteria, timezone, by)
    dialect = _dialect(engine)
    where = _kind(scope, criteria, "web.visit")
    count = sa.func.count().label("n")
    users = sa.func.count(sa.distinct(events.c.os_user)).label("users")
    devs = sa.func.count(sa.distinct(events.c.device_id)).label("devices")
    url = _first_word(dialect, events.c.subject).label("url")
    quarter = (events.c.time_us // _QUARTER_US).label("quarter")
    with engine.connect() as conn:
        domains = conn.execute(
            sa.select(events.c.tag, count, users, devs)
            .where(*where)
            .group_by(events.c.tag)
            .order_by(count.desc(), events.c.tag)
            .limit(TOP)
        ).all()
        sites = conn.execute(
            sa.select(url, count, users, devs)
            .where(*where)
            .group_by(url)
            .order_by(count.desc(), url)
            .limit(TOP)
        ).all()
        by_who = _web_by_who(conn, where, by)
        quarters = conn.execute(
            sa.select(quarter, count).where(*where).group_by(quarter).order_by(quarter)
        ).all()
    zone = zoneinfo.ZoneInfo(timezone)
    hours = [0] * 24
    for row in quarters:
        local = dt.datetime.fromtimestamp(row.quarter * (_QUARTER_US // 1_000_000), tz=zone)
        hours[local.hour] += int(row.n)
    return WebReport(
        domains=[Count(r.tag or "", r.n, r.users, r.devices) for r in domains],
        sites=[Count(r.url or "", r.n, r.users, r.devices) for r in sites],
        by_who=by_who,
        hours=hours,
        total=sum(hours),
    )


def _web_rolled_up(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str, by: str
) -> WebReport:
    kinds = ("web.visit",)
    with engine.connect() as conn:
        per_domain = _rollup_sums(conn, scope, criteria, kinds, "key")
        hours = _local_hours(
            _rollup_sums(conn, scope, criteria, kinds, "hour"), zoneinfo.ZoneInfo(timezone)
        )
        by_who: list[Count] = []
        if by == "group":
            per_group = _rollup_sums(conn, scope, criteria, kinds, "group_key")
            names = {r.id: r.name for r in conn.execute(sa.select(groups.c.id, groups.c.name))}
            by_who = [
                Count(key, count, who=names.get(group_id, str(group_id)))
                for (group_id, key), (count, _) in _top(per_group, index=0, limit=ROWS)
            ]
    return WebReport(
        domains=[Count(key, count) for (key,), (count, _) in _top(per_domain, index=0, limit=TOP)],
        sites=[],
        by_who=by_who,
        hours=hours,
        total=sum(hours),
        rolled_up=True,
    )


def _web_by_who(
    conn: sa.Connection, where: Sequence[sa.ColumnElement[bool]], by: str
) -> list[Count]:
    count = sa.func.count().label("n")
    if by == "group":
        who: sa.ColumnElement[Any] = groups.c.name
        source: sa.FromClause = events.join(devices, devices.c.id == events.c.device_id).join(
            groups, groups.c.id == devices.c.group_id
        )
    elif by == "device":
        who = events.c.device_id
        source = events
    else:
        who = events.c.os_user
        source = events
    rows = conn.execute(
        sa.select(who.label("who"), events.c.tag, count)
        .select_from(source)
        .where(*where)
        .group_by(who, events.c.tag)
        .order_by(count.desc(), who, events.c.tag)
        .limit(ROWS)
    ).all()
    names = hostnames(conn, (r.who for r in rows)) if by == "device" else {}
    return [Count(r.tag or "", r.n, who=names.get(r.who, r.who or "")) for r in rows]


# -- applications ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppTime:
    day: dt.date | None
    user: str
    application: str
    title: str
    duration_us: int


@dataclass(frozen=True, slots=True)
class AppReport:
    per_day: list[AppTime]  # per day, user and application
    titles: list[AppTime]  # per day, user, application and window title
    totals: list[AppTime]  # per application over the range (the chart)
    # From the rollups: per_day is per day and application (user ""), no titles.
    rolled_up: bool = False


def apps_report(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str
) -> AppReport:
    """Focused time per application and window title, per user per local day: the
    sum of the focus spans that ``window.focus`` and ``window.idle`` events end (a
    span counts on the day it ended)."""
    if rolls_up(criteria, timezone):
        return _apps_rolled_up(engine, scope, criteria, timezone)
    dialect = _dialect(engine)
    where = [
        *_kind(scope, criteria, "window.focus", "window.idle"),
        json_int(dialect, events.c.payload, "previous", "duration_us").is_not(None),
    ]
    app = sa.func.coalesce(
        json_text(dialect, events.c.payload, "previous", "window", "application"), ""
    ).label("app")
    title = sa.func.coalesce(
        json_text(dialect, events.c.payload, "previous", "window", "title"), ""
    ).label("title")
    spent = sa.func.sum(json_int(dialect, events.c.payload, "previous", "duration_us")).label(
        "spent"
    )
    user = sa.func.coalesce(events.c.os_user, "").label("user")
    day, days = _day_index(zoneinfo.ZoneInfo(timezone), criteria)
    day = day.label("day")
    with engine.connect() as conn:
        per_day = conn.execute(
            sa.select(day, user, app, spent)
            .where(*where)
            .group_by(day, user, app)
            .order_by(day.desc(), spent.desc(), user, app)
            .limit(ROWS)
        ).all()
        titles = conn.execute(
            sa.select(day, user, app, title, spent)
            .where(*where)
            .group_by(day, user, app, title)
            .order_by(spent.desc(), day.desc(), user, app, title)
            .limit(ROWS)
        ).all()
        totals = conn.execute(
            sa.select(app, spent).where(*where).group_by(app).order_by(spent.desc(), app).limit(TOP)
        ).all()
    return AppReport(
        per_day=[AppTime(days[r.day], r.user, r.app, "", int(r.spent)) for r in per_day],
        titles=[AppTime(days[r.day], r.user, r.app, r.title, int(r.spent)) for r in titles],
        totals=[AppTime(None, "", r.app, "", int(r.spent)) for r in totals],
    )


def _apps_rolled_up(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str
) -> AppReport:
    kinds = ("window.focus", "window.idle")
    zone = zoneinfo.ZoneInfo(timezone)
    with engine.connect() as conn:
        per_app = _rollup_sums(conn, scope, criteria, kinds, "key")
        per_hour = _rollup_sums(conn, scope, criteria, kinds, "hour_key")
    per_day: dict[tuple[dt.date, str], int] = {}
    for (hour_us, app), (_, spent) in per_hour.items():
        day = dt.datetime.fromtimestamp(hour_us / 1e6, tz=zone).date()
        per_day[(day, app)] = per_day.get((day, app), 0) + spent
    days = sorted(
        ((day, app, spent) for (day, app), spent in per_day.items() if spent > 0),
        key=lambda r: (-r[0].toordinal(), -r[2], r[1]),
    )[:ROWS]
    return AppReport(
        per_day=[AppTime(day, "", app, "", spent) for day, app, spent in days],
        titles=[],
        totals=[
            AppTime(None, "", key, "", spent)
            for (key,), (_, spent) in _top(per_app, index=1, limit=TOP)
            if spent > 0
        ],
        rolled_up=True,
    )


# -- logons ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogonDay:
    day: dt.date
    user: str
    first_logon_us: int | None
    last_logoff_us: int | None
    sessions: int
    devices: int


def logons_report(
    engine: sa.Engine, scope: Scope, criteria: EventCriteria, timezone: str
) -> list[LogonDay]:
    """Per user and local day: the first logon, the last logoff, and the number of
    sessions begun (logons) and on how many PCs; newest day first."""
    day, days = _day_index(zoneinfo.ZoneInfo(timezone), criteria)
    day = day.label("day")
    # The sessions collector sets os_user to the session's user: reading only indexed
    # columns keeps this report on the (kind, time, os_user, device) index.
    user = sa.func.coalesce(events.c.os_user, "").label("user")
    is_logon = events.c.kind == "session.logon"
    is_logoff = events.c.kind == "session.logoff"
    # One pass over both kinds (two grouped queries cost twice the scan and sort).
    query = (
        sa.select(
            day,
            user,
            sa.func.min(sa.case((is_logon, events.c.time_us))).label("first"),
            sa.func.max(sa.case((is_logoff, events.c.time_us))).label("last"),
            sa.func.count(sa.case((is_logon, 1))).label("n"),
            sa.func.count(sa.distinct(sa.case((is_logon, events.c.device_id)))).label("devices"),
        )
        .where(*_kind(scope, criteria, "session.logon", "session.logoff"))
        .group_by(day, user)
        .order_by(day.desc(), user)
        .limit(ROWS)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        LogonDay(
            day=days[row.day],
            user=row.user,
            first_logon_us=row.first,
            last_logoff_us=row.last,
            sessions=int(row.n),
            devices=int(row.devices),
        )
        for row in rows
    ]


# -- removable media -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemovableTotal:
    device_id: str
    hostname: str
    user: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RemovableCopy:
    time_us: int
    device_id: str
    hostname: str
    user: str
    path: str
    size: int | None
    medium: str


@dataclass(frozen=True, slots=True)
class RemovableReport:
    totals: list[RemovableTotal]
    copies: list[RemovableCopy]  # newest first
    files: int
    bytes: int


def removable_report(engine: sa.Engine, scope: Scope, criteria: EventCriteria) -> RemovableReport:
    """File copies to removable media: per PC and user, the latest copies, and the
    totals over everything in scope."""
    dialect = _dialect(engine)
    where = _kind(scope, criteria, "file.copied_to_removable")
    size = json_int(dialect, events.c.payload, "size")
    user = sa.func.coalesce(events.c.os_user, "").label("user")
    files = sa.func.count().label("files")
    total = sa.func.coalesce(sa.func.sum(size), 0).label("bytes")
    with engine.connect() as conn:
        per = conn.execute(
            sa.select(events.c.device_id, user, files, total)
            .where(*where)
            .group_by(events.c.device_id, user)
            .order_by(total.desc(), files.desc(), events.c.device_id, user)
            .limit(ROWS)
        ).all()
        latest = conn.execute(
            sa.select(
                events.c.time_us,
                events.c.device_id,
                user,
                events.c.subject,
                size.label("size"),
                events.c.tag,
            )
            .where(*where)
            .order_by(events.c.time_us.desc(), events.c.seq.desc())
            .limit(ROWS)
        ).all()
        overall = conn.execute(sa.select(files, total).where(*where)).one()
        names = hostnames(conn, [r.device_id for r in per] + [r.device_id for r in latest])
    return RemovableReport(
        totals=[
            RemovableTotal(
                r.device_id, names.get(r.device_id, r.device_id), r.user, r.files, int(r.bytes)
            )
            for r in per
        ],
        copies=[
            RemovableCopy(
                r.time_us,
                r.device_id,
                names.get(r.device_id, r.device_id),
                r.user,
                r.subject or "",
                None if r.size is None else int(r.size),
                r.tag or "",
            )
            for r in latest
        ],
        files=int(overall.files),
        bytes=int(overall.bytes),
    )


# -- USB devices -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsbSighting:
    ids: str  # vendor:product
    serial: str
    name: str  # manufacturer and product as the device names itself
    category: str
    attachments: int
    pcs: int
    last_us: int
    device_id: str = ""
    hostname: str = ""
    user: str = ""

    @property
    def mass_storage(self) -> bool:
        return self.category == "mass_storage"


@dataclass(frozen=True, slots=True)
class UsbReport:
    devices: list[UsbSighting]  # one row per USB device (ids and serial)
    per_pc: list[UsbSighting]  # one row per USB device, PC and user


def usb_report(engine: sa.Engine, scope: Scope, criteria: EventCriteria) -> UsbReport:
    """USB devices attached in the range: per device (vendor:product and serial),
    and per PC and user; mass storage first."""
    dialect = _dialect(engine)
    where = _kind(scope, criteria, "device.usb_attached")
    serial = sa.func.coalesce(json_text(dialect, events.c.payload, "serial"), "").label("serial")
    category = sa.func.coalesce(json_text(dialect, events.c.payload, "category"), "other").label(
        "category"
    )
    maker = sa.func.coalesce(json_text(dialect, events.c.payload, "manufacturer"), "").label(
        "maker"
    )
    product = sa.func.coalesce(json_text(dialect, events.c.payload, "product"), "").label("product")
    ids = sa.func.coalesce(events.c.tag, "").label("ids")
    user = sa.func.coalesce(events.c.os_user, "").label("user")
    attachments = sa.func.count().label("n")
    pcs = sa.func.count(sa.distinct(events.c.device_id)).label("pcs")
    last = sa.func.max(events.c.time_us).label("last")
    storage_first = sa.case((category == "mass_storage", 0), else_=1)
    with engine.connect() as conn:
        per_device = conn.execute(
            sa.select(ids, serial, category, maker, product, attachments, pcs, last)
            .where(*where)
            .group_by(ids, serial, category, maker, product)
            .order_by(storage_first, attachments.desc(), ids, serial)
            .limit(ROWS)
        ).all()
        per_pc = conn.execute(
            sa.select(
                events.c.device_id, user, ids, serial, category, maker, product, attachments, last
            )
            .where(*where)
            .group_by(events.c.device_id, user, ids, serial, category, maker, product)
            .order_by(storage_first, last.desc(), events.c.device_id, ids)
            .limit(ROWS)
        ).all()
        names = hostnames(conn, (r.device_id for r in per_pc))
    return UsbReport(
        devices=[
            UsbSighting(
                r.ids, r.serial, f"{r.maker} {r.product}".strip(), r.category, r.n, r.pcs, r.last
            )
            for r in per_device
        ],
        per_pc=[
            UsbSighting(
                r.ids,
                r.serial,
                f"{r.maker} {r.product}".strip(),
                r.category,
                r.n,
                1,
                r.last,
                device_id=r.device_id,
                hostname=names.get(r.device_id, r.device_id),
                user=r.user,
            )
            for r in per_pc
        ],
    )
