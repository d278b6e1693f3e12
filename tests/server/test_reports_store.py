"""Report aggregations on SQLite and PostgreSQL: local hours and days (Asia/Tokyo, a
DST zone and a half-hour zone), application time sums, logon hours, removable-media
copies and USB devices, all within the user's scope."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest
import sqlalchemy as sa

from sekimori.server.store.event_search import EventCriteria
from sekimori.server.store.reports import (
    apps_report,
    day_starts,
    logons_report,
    removable_report,
    usb_report,
    web_report,
)
from sekimori.server.store.schema import groups
from sekimori.server.store.scope import EVERYTHING, Scope
from tests.console.activity_seed import focus, logoff, logon, removable_copy, usb, visit
from tests.console.seed import add_device, add_events

MINUTE = 60_000_000
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


def at(  # noqa: PLR0917 - positional like datetime()
    zone: zoneinfo.ZoneInfo | str, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> int:
    tz = zone if isinstance(zone, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(zone)
    local = dt.datetime(year, month, day, hour, minute, tzinfo=tz)
    return int(local.timestamp() * 1_000_000)


def week(zone: zoneinfo.ZoneInfo | str = TOKYO) -> EventCriteria:
    """2024-03-04 .. 2024-03-11 local (a Monday to a Monday)."""
    return EventCriteria(since_us=at(zone, 2024, 3, 4), until_us=at(zone, 2024, 3, 11))


def _sales_only(engine: sa.Engine) -> Scope:
    with engine.connect() as conn:
        ids = conn.execute(sa.select(groups.c.id).where(groups.c.name == "sales")).scalars()
        return Scope(all_groups=False, group_ids=frozenset(ids))


def test_web_visits_by_local_hour_in_tokyo(engine: sa.Engine) -> None:
    pc = add_device(engine, "sales-01", group="sales")
    hr = add_device(engine, "hr-01", group="hr")
    add_events(
        engine,
        pc,
        [
            # 08:59 and 09:00 Tokyo are 23:59 and 00:00 UTC: different UTC days.
            visit("https://mail.example/inbox", "Inbox", "taro", at(TOKYO, 2024, 3, 5, 8, 59)),
            visit("https://mail.example/inbox", "Inbox", "taro", at(TOKYO, 2024, 3, 5, 9, 0)),
            visit("https://mail.example/sent", "Sent", "taro", at(TOKYO, 2024, 3, 6, 9, 30)),
            visit("https://news.example/", "News", "hanako", at(TOKYO, 2024, 3, 6, 23, 59)),
            # Outside the week: not counted.
            visit("https://news.example/", "News", "hanako", at(TOKYO, 2024, 3, 11, 0, 0)),
        ],
    )
    add_events(engine, hr, [visit("https://hr.example/", "HR", "jiro", at(TOKYO, 2024, 3, 5))])
    report = web_report(engine, EVERYTHING, week(), "Asia/Tokyo")
    assert report.hours[8] == 1 and report.hours[9] == 2 and report.hours[23] == 1
    assert report.hours[0] == 1  # the hr visit at midnight
    assert report.total == 5
    # The whole fleet: from the rollups, so no sites and no per-user rows.
    assert report.rolled_up and report.sites == [] and report.by_who == []
    assert [(d.key, d.count) for d in report.domains][:1] == [("mail.example", 3)]
    taro = dataclasses.replace(week(), user="taro")
    by_taro = web_report(engine, EVERYTHING, taro, "Asia/Tokyo")
    assert not by_taro.rolled_up
    assert [(d.key, d.count, d.users) for d in by_taro.domains] == [("mail.example", 3, 1)]
    assert ("https://mail.example/inbox", 2) in [(s.key, s.count) for s in by_taro.sites]

    sales = web_report(engine, _sales_only(engine), week(), "Asia/Tokyo", by="device")
    assert "hr.example" not in {d.key for d in sales.domains}
    assert sales.total == 4
    one_pc = dataclasses.replace(week(), device="sales-01")
    assert {
        c.who
        for c in web_report(engine, _sales_only(engine), one_pc, "Asia/Tokyo", by="device").by_who
    } == {"sales-01"}
    by_group = web_report(engine, EVERYTHING, week(), "Asia/Tokyo", by="group")
    assert {(c.who, c.key, c.count) for c in by_group.by_who} >= {
        ("sales", "mail.example", 3),
        ("hr", "hr.example", 1),
    }
    by_user = web_report(engine, EVERYTHING, taro, "Asia/Tokyo", by="user")
    assert ("taro", "mail.example", 3) in {(c.who, c.key, c.count) for c in by_user.by_who}


@pytest.mark.parametrize(
    ("zone", "local_hours"),
    [
        # New York moves to daylight time on 2024-03-10 at 02:00: 01:30 EST and 03:30
        # EDT are one UTC hour apart but two local hours apart.
        ("America/New_York", [1, 3, 12]),
        # Kolkata is UTC+05:30: a UTC hour holds two local hours.
        ("Asia/Kolkata", [9, 10, 12]),
    ],
)
def test_hours_of_the_day_in_dst_and_half_hour_zones(
    engine: sa.Engine, zone: str, local_hours: list[int]
) -> None:
    pc = add_device(engine, "pc", group="sales")
    tz = zoneinfo.ZoneInfo(zone)
    if zone == "America/New_York":
        times = [at(tz, 2024, 3, 10, 1, 30), at(tz, 2024, 3, 10, 3, 30), at(tz, 2024, 3, 8, 12)]
    else:
        times = [at(tz, 2024, 3, 5, 9, 50), at(tz, 2024, 3, 5, 10, 10), at(tz, 2024, 3, 5, 12)]
    add_events(engine, pc, [visit("https://a.example/", "A", "taro", t) for t in times])
    report = web_report(engine, EVERYTHING, week(tz), zone)
    assert [h for h, n in enumerate(report.hours) if n] == local_hours


def test_application_time_sums_per_user_per_local_day(engine: sa.Engine) -> None:
    pc = add_device(engine, "sales-01", group="sales")
    hr = add_device(engine, "hr-01", group="hr")
    day1 = at(TOKYO, 2024, 3, 5, 10)
    add_events(
        engine,
        pc,
        [
            focus("Chromium", "Inbox - Mail", 20 * MINUTE, "taro", day1),
            focus("Chromium", "Wiki", 10 * MINUTE, "taro", day1 + 30 * MINUTE),
            focus("XTerm", "vim", 5 * MINUTE, "taro", day1 + 40 * MINUTE, kind="window.idle"),
            focus("Chromium", "Inbox - Mail", 7 * MINUTE, "hanako", day1 + 50 * MINUTE),
            # 00:30 Tokyo on the 6th is still the 5th in UTC: a day of its own here.
            focus("Chromium", "Inbox - Mail", 3 * MINUTE, "taro", at(TOKYO, 2024, 3, 6, 0, 30)),
        ],
    )
    add_events(engine, hr, [focus("Evince", "給与.pdf", 60 * MINUTE, "jiro", day1)])
    fleet = apps_report(engine, _sales_only(engine), week(), "Asia/Tokyo")
    assert fleet.rolled_up and fleet.titles == []
    assert {(r.day, r.user, r.application): r.duration_us for r in fleet.per_day} == {
        (dt.date(2024, 3, 5), "", "Chromium"): 37 * MINUTE,
        (dt.date(2024, 3, 5), "", "XTerm"): 5 * MINUTE,
        (dt.date(2024, 3, 6), "", "Chromium"): 3 * MINUTE,
    }
    assert [(t.application, t.duration_us) for t in fleet.totals] == [
        ("Chromium", 40 * MINUTE),
        ("XTerm", 5 * MINUTE),
    ]
    one_pc = dataclasses.replace(week(), device="sales-01")
    report = apps_report(engine, _sales_only(engine), one_pc, "Asia/Tokyo")
    per_day = {(r.day, r.user, r.application): r.duration_us for r in report.per_day}
    assert per_day == {
        (dt.date(2024, 3, 5), "taro", "Chromium"): 30 * MINUTE,
        (dt.date(2024, 3, 5), "taro", "XTerm"): 5 * MINUTE,
        (dt.date(2024, 3, 5), "hanako", "Chromium"): 7 * MINUTE,
        (dt.date(2024, 3, 6), "taro", "Chromium"): 3 * MINUTE,
    }
    titles = {(r.day, r.user, r.title): r.duration_us for r in report.titles}
    assert titles[(dt.date(2024, 3, 5), "taro", "Inbox - Mail")] == 20 * MINUTE
    assert titles[(dt.date(2024, 3, 5), "taro", "Wiki")] == 10 * MINUTE
    assert [(t.application, t.duration_us) for t in report.totals] == [
        ("Chromium", 40 * MINUTE),
        ("XTerm", 5 * MINUTE),
    ]
    everyone = apps_report(engine, EVERYTHING, week(), "Asia/Tokyo")
    assert everyone.totals[0].application == "Evince"
    only_hanako = apps_report(
        engine,
        EVERYTHING,
        EventCriteria(since_us=week().since_us, until_us=week().until_us, user="hanako"),
        "Asia/Tokyo",
    )
    assert [(r.user, r.duration_us) for r in only_hanako.per_day] == [("hanako", 7 * MINUTE)]


def test_logon_hours_first_logon_last_logoff_and_sessions(engine: sa.Engine) -> None:
    pc = add_device(engine, "sales-01", group="sales")
    pc2 = add_device(engine, "sales-02", group="sales")
    hr = add_device(engine, "hr-01", group="hr")
    add_events(
        engine,
        pc,
        [
            logon("taro", at(TOKYO, 2024, 3, 5, 8, 55)),
            logoff("taro", at(TOKYO, 2024, 3, 5, 12, 0)),
            logon("taro", at(TOKYO, 2024, 3, 5, 13, 0)),
            logoff("taro", at(TOKYO, 2024, 3, 5, 18, 30)),
            logon("taro", at(TOKYO, 2024, 3, 6, 9, 10)),
        ],
    )
    add_events(engine, pc2, [logon("taro", at(TOKYO, 2024, 3, 5, 10, 0), tty="pts/1")])
    add_events(engine, hr, [logon("jiro", at(TOKYO, 2024, 3, 5, 7, 0))])
    rows = logons_report(engine, _sales_only(engine), week(), "Asia/Tokyo")
    assert [(r.day, r.user) for r in rows] == [
        (dt.date(2024, 3, 6), "taro"),
        (dt.date(2024, 3, 5), "taro"),
    ]
    newest, first_day = rows
    assert newest.first_logon_us == at(TOKYO, 2024, 3, 6, 9, 10)
    assert newest.last_logoff_us is None and newest.sessions == 1
    assert first_day.first_logon_us == at(TOKYO, 2024, 3, 5, 8, 55)
    assert first_day.last_logoff_us == at(TOKYO, 2024, 3, 5, 18, 30)
    assert first_day.sessions == 3 and first_day.devices == 2


def test_removable_copies_totals_and_paths(engine: sa.Engine) -> None:
    pc = add_device(engine, "sales-01", group="sales")
    hr = add_device(engine, "hr-01", group="hr")
    t = at(TOKYO, 2024, 3, 5, 15)
    add_events(
        engine,
        pc,
        [
            removable_copy("/media/taro/STICK/顧客.csv", 1000, "taro", t),
            removable_copy("/media/taro/STICK/見積.xlsx", 2500, "taro", t + MINUTE),
            removable_copy("/media/taro/STICK/empty", None, "taro", t + 2 * MINUTE),
        ],
    )
    add_events(engine, hr, [removable_copy("/media/jiro/X/給与.pdf", 9999, "jiro", t)])
    report = removable_report(engine, _sales_only(engine), week())
    assert (report.files, report.bytes) == (3, 3500)
    assert [(r.hostname, r.user, r.files, r.bytes) for r in report.totals] == [
        ("sales-01", "taro", 3, 3500)
    ]
    assert [c.path for c in report.copies] == [
        "/media/taro/STICK/empty",
        "/media/taro/STICK/見積.xlsx",
        "/media/taro/STICK/顧客.csv",
    ]
    assert report.copies[1].size == 2500 and report.copies[0].size is None
    assert report.copies[0].medium == "/dev/sdb1"
    everything = removable_report(engine, EVERYTHING, week())
    assert (everything.files, everything.bytes) == (4, 13499)


def test_usb_devices_per_device_and_per_pc(engine: sa.Engine) -> None:
    pc = add_device(engine, "sales-01", group="sales")
    pc2 = add_device(engine, "sales-02", group="sales")
    hr = add_device(engine, "hr-01", group="hr")
    t = at(TOKYO, 2024, 3, 5, 11)
    add_events(
        engine,
        pc,
        [
            usb("0781", "5567", "AA01", t, user="taro"),
            usb("0781", "5567", "AA01", t + MINUTE, kind="device.usb_detached"),
            usb("0781", "5567", "AA01", t + 2 * MINUTE, user="taro"),
            usb("046d", "c52b", "", t, category="hid", product="Unifying Receiver"),
        ],
    )
    add_events(engine, pc2, [usb("0781", "5567", "AA01", t + 3 * MINUTE, user="hanako")])
    add_events(engine, hr, [usb("0951", "1666", "HR77", t)])
    report = usb_report(engine, _sales_only(engine), week())
    assert [(d.ids, d.serial, d.attachments, d.pcs, d.mass_storage) for d in report.devices] == [
        ("0781:5567", "AA01", 3, 2, True),
        ("046d:c52b", "", 1, 1, False),
    ]
    assert report.devices[0].name == "SanDisk Cruzer Blade"
    assert report.devices[0].last_us == t + 3 * MINUTE
    per_pc = [(r.hostname, r.user, r.ids, r.attachments) for r in report.per_pc]
    assert per_pc == [
        ("sales-02", "hanako", "0781:5567", 1),
        ("sales-01", "taro", "0781:5567", 2),
        ("sales-01", "", "046d:c52b", 1),
    ]
    assert "0951:1666" not in {d.ids for d in report.devices}


def test_local_days_of_a_range() -> None:
    tz = zoneinfo.ZoneInfo("America/New_York")
    days = day_starts(tz, at(tz, 2024, 3, 9, 12), at(tz, 2024, 3, 11))
    assert days == [dt.date(2024, 3, 9), dt.date(2024, 3, 10)]
