"""The console's alert queries and changes (store/alert_queries), on SQLite and
PostgreSQL, with alerts raised by the real ingest rules."""

from __future__ import annotations

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.alert_queries import (
    COMMENT_MAX,
    Alert,
    AlertQuery,
    add_comment,
    alert_events_of,
    alert_history,
    assign_alert,
    assignable_users,
    device_open_alerts,
    get_alert,
    latest_open_alerts,
    open_counts,
    rule_choices,
    search_alerts,
    set_status,
)
from sekimori.server.store.schema import groups
from sekimori.server.store.scope import EVERYTHING, Scope
from sekimori.server.store.users import create_user, set_disabled
from tests.console.alert_seed import alert_ids, copied_to_usb, ingest, usb_stick
from tests.console.seed import add_device

ROLES = ("administrator", "operator")
COPY = "builtin.file_copied_to_removable"
USB = "builtin.usb_mass_storage_attached"
PASSWORD = "a long enough password"


def _scope(engine: sa.Engine, *names: str) -> Scope:
    with engine.connect() as conn:
        ids = conn.execute(sa.select(groups.c.id).where(groups.c.name.in_(names))).scalars()
        return Scope(all_groups=False, group_ids=frozenset(int(i) for i in ids))


def _one(engine: sa.Engine, alert_id: int) -> Alert:
    found = get_alert(engine, EVERYTHING, alert_id)
    assert found is not None
    return found


def _fleet(engine: sa.Engine) -> tuple[str, str]:
    sales = add_device(engine, "sales-pc-01", group="sales")
    hr = add_device(engine, "hr-pc-07", group="hr")
    t = now_us() - 3_600_000_000
    ingest(
        engine,
        sales,
        [
            copied_to_usb("/media/usb/plan.xlsx", time_us=t),
            copied_to_usb("/media/usb/budget.xlsx", time_us=t + 1_000_000),
        ],
    )
    ingest(engine, sales, [usb_stick(time_us=t + 2_000_000)])
    ingest(engine, hr, [copied_to_usb("/media/usb/salaries.csv", time_us=t + 3_000_000)])
    return sales, hr


def test_the_list_is_scoped_filtered_and_newest_first(engine: sa.Engine) -> None:
    sales, hr = _fleet(engine)
    everything = search_alerts(engine, EVERYTHING, AlertQuery())
    assert [(a.hostname, a.rule_id, a.count) for a in everything.alerts] == [
        ("hr-pc-07", COPY, 1),
        ("sales-pc-01", USB, 1),
        ("sales-pc-01", COPY, 2),  # two copies, one alert
    ]
    assert not everything.has_more
    sales_only = search_alerts(engine, _scope(engine, "sales"), AlertQuery())
    assert {a.device_id for a in sales_only.alerts} == {sales}
    assert search_alerts(engine, Scope(all_groups=False), AlertQuery()).alerts == []

    def ids(**filters: object) -> list[str]:
        found = search_alerts(engine, EVERYTHING, AlertQuery(**filters))  # type: ignore[arg-type]
        return [f"{a.hostname}/{a.rule_id}" for a in found.alerts]

    assert ids(severity="medium") == [f"sales-pc-01/{USB}"]
    assert ids(rule=COPY) == [f"hr-pc-07/{COPY}", f"sales-pc-01/{COPY}"]
    assert ids(device="HR-PC") == [f"hr-pc-07/{COPY}"]
    assert ids(device=sales, rule=COPY) == [f"sales-pc-01/{COPY}"]
    assert ids(q="salaries") == [f"hr-pc-07/{COPY}"]
    assert ids(q="no such thing") == []
    hr_alert = search_alerts(engine, EVERYTHING, AlertQuery(device=hr)).alerts[0]
    assert ids(since_us=hr_alert.last_us) == [f"hr-pc-07/{COPY}"]
    assert ids(until_us=hr_alert.last_us) == [f"sales-pc-01/{USB}", f"sales-pc-01/{COPY}"]

    # Paging: one extra row says whether there is more.
    first = search_alerts(engine, EVERYTHING, AlertQuery(), per_page=2)
    second = search_alerts(engine, EVERYTHING, AlertQuery(page=2), per_page=2)
    assert (len(first.alerts), first.has_more, len(second.alerts), second.has_more) == (
        2,
        True,
        1,
        False,
    )
    assert rule_choices(engine, _scope(engine, "hr")) == [(COPY, "File copied to removable media")]


def test_an_alert_outside_the_scope_is_not_found(engine: sa.Engine) -> None:
    sales, hr = _fleet(engine)
    (hr_alert,) = alert_ids(engine, hr)
    assert get_alert(engine, _scope(engine, "sales"), hr_alert) is None
    assert get_alert(engine, _scope(engine, "hr"), hr_alert) is not None
    assert get_alert(engine, EVERYTHING, 999_999) is None
    assert device_open_alerts(engine, _scope(engine, "sales"), hr) == []
    assert [a.rule_id for a in device_open_alerts(engine, EVERYTHING, sales)] == [USB, COPY]


def test_the_matching_events_come_with_their_subject(engine: sa.Engine) -> None:
    sales, _hr = _fleet(engine)
    copy_alert = _one(engine, alert_ids(engine, sales)[0])
    found = alert_events_of(copy_alert, engine)
    assert [(e.kind, e.os_user, e.subject) for e in found] == [
        ("file.copied_to_removable", "taro", "/media/usb/plan.xlsx"),
        ("file.copied_to_removable", "taro", "/media/usb/budget.xlsx"),
    ]
    assert [e.seq for e in found] == [1, 2]


def test_acknowledge_resolve_reopen_with_history(engine: sa.Engine) -> None:
    sales, _hr = _fleet(engine)
    alert_id = alert_ids(engine, sales)[0]
    t = now_us()
    opened = _one(engine, alert_id)
    assert set_status(engine, opened, "reopen", author="alice", now_us=t) == "not_allowed"
    assert set_status(engine, opened, "acknowledge", author="alice", now_us=t) == "ok"
    # Someone else acting on the alert as it was read loses.
    assert set_status(engine, opened, "acknowledge", author="bob", now_us=t) == "unchanged"
    acknowledged = _one(engine, alert_id)
    assert (acknowledged.status, acknowledged.resolved_us) == ("acknowledged", None)
    assert set_status(engine, acknowledged, "acknowledge", author="bob", now_us=t) == (
        "not_allowed"
    )
    assert set_status(engine, acknowledged, "resolve", author="bob", now_us=t + 1) == "ok"
    resolved = _one(engine, alert_id)
    assert (resolved.status, resolved.resolved_us) == ("resolved", t + 1)
    assert set_status(engine, resolved, "reopen", author="alice", now_us=t + 2) == "ok"
    reopened = _one(engine, alert_id)
    assert (reopened.status, reopened.resolved_us, reopened.updated_us) == ("open", None, t + 2)
    assert set_status(engine, reopened, "delete", author="alice", now_us=t) == "not_allowed"
    assert [(h.author, h.action, h.body) for h in alert_history(engine, reopened)] == [
        ("alice", "status", "acknowledged"),
        ("bob", "status", "resolved"),
        ("alice", "status", "open"),
    ]
    assert search_alerts(engine, EVERYTHING, AlertQuery(statuses=("resolved",))).alerts == []


def test_reopening_is_refused_while_a_newer_alert_of_the_same_kind_is_open(
    engine: sa.Engine,
) -> None:
    sales, _hr = _fleet(engine)
    old = _one(engine, alert_ids(engine, sales)[0])
    assert set_status(engine, old, "resolve", author="alice", now_us=now_us()) == "ok"
    ingest(engine, sales, [copied_to_usb("/media/usb/again.docx")])
    newer = [a for a in alert_ids(engine, sales) if a != old.id and _one(engine, a).rule_id == COPY]
    assert len(newer) == 1
    resolved = _one(engine, old.id)
    assert set_status(engine, resolved, "reopen", author="alice", now_us=now_us()) == "conflict"
    assert _one(engine, old.id).status == "resolved"
    assert alert_history(engine, resolved)[-1].body == "resolved"


def test_assign_only_to_users_who_may_handle_the_device(engine: sa.Engine) -> None:
    sales, hr = _fleet(engine)
    create_user(engine, "alice", PASSWORD, "administrator")
    create_user(engine, "bob", PASSWORD, "operator", groups_=["sales"])
    create_user(engine, "carol", PASSWORD, "auditor")
    create_user(engine, "erin", PASSWORD, "operator", groups_=["hr"])
    frank = create_user(engine, "frank", PASSWORD, "operator", groups_=["sales", "hr"])
    set_disabled(engine, frank, True)
    assert assignable_users(engine, sales, ROLES) == ["alice", "bob"]
    assert assignable_users(engine, hr, ROLES) == ["alice", "erin"]

    alert = _one(engine, alert_ids(engine, sales)[0])
    t = now_us()
    for name in ("erin", "carol", "frank", "nobody"):
        assert assign_alert(engine, alert, name, author="alice", roles=ROLES, now_us=t) == (
            "not_eligible"
        )
    assert assign_alert(engine, alert, "bob", author="alice", roles=ROLES, now_us=t) == "ok"
    assert assign_alert(engine, alert, "bob", author="alice", roles=ROLES, now_us=t) == (
        "unchanged"
    )
    assert _one(engine, alert.id).assignee == "bob"
    found = search_alerts(engine, EVERYTHING, AlertQuery(assignee="bob")).alerts
    assert [a.id for a in found] == [alert.id]
    unassigned = search_alerts(engine, EVERYTHING, AlertQuery(assignee="-")).alerts
    assert alert.id not in [a.id for a in unassigned] and len(unassigned) == 2
    assert assign_alert(engine, alert, None, author="bob", roles=ROLES, now_us=t + 1) == "ok"
    assert _one(engine, alert.id).assignee is None
    assert [(h.author, h.action, h.body) for h in alert_history(engine, alert)] == [
        ("alice", "assign", "bob"),
        ("bob", "assign", ""),
    ]


def test_comments_are_bounded(engine: sa.Engine) -> None:
    sales, _hr = _fleet(engine)
    alert = _one(engine, alert_ids(engine, sales)[0])
    t = now_us()
    assert add_comment(engine, alert, "   ", author="bob", now_us=t) == "unchanged"
    assert add_comment(engine, alert, "x" * (COMMENT_MAX + 1), author="bob", now_us=t) == (
        "too_long"
    )
    note = "Asked the user: the plan was for a customer visit.\n課長に確認済み。"
    assert add_comment(engine, alert, f"  {note}  ", author="bob", now_us=t) == "ok"
    assert [(h.action, h.body) for h in alert_history(engine, alert)] == [("comment", note)]


def test_dashboard_counts_and_latest_are_scoped(engine: sa.Engine) -> None:
    sales, hr = _fleet(engine)
    assert open_counts(engine, EVERYTHING) == {
        "critical": 0,
        "high": 2,
        "medium": 1,
        "low": 0,
        "info": 0,
    }
    assert open_counts(engine, _scope(engine, "hr"))["high"] == 1
    assert open_counts(engine, _scope(engine, "hr"))["medium"] == 0
    usb = _one(engine, alert_ids(engine, sales)[1])
    assert set_status(engine, usb, "acknowledge", author="alice", now_us=now_us()) == "ok"
    assert open_counts(engine, EVERYTHING)["medium"] == 0  # acknowledged: not open
    latest = latest_open_alerts(engine, EVERYTHING, limit=5)
    assert [a.hostname for a in latest] == ["hr-pc-07", "sales-pc-01"]
    assert [a.device_id for a in latest_open_alerts(engine, _scope(engine, "sales"))] == [sales]
    assert latest_open_alerts(engine, _scope(engine, "nobody")) == []
    del hr
