"""The reports against a real server: each report's table and chart, group scope
(bob never sees hr's activity), permissions by URL and by menu, audit entries, and
bad filters as 400."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from sekimori.clock import now_us
from sekimori.server.store.audit import search_audit
from tests.console.activity_seed import focus, logoff, logon, removable_copy, usb, visit
from tests.console.conftest import ConsoleClient, as_user
from tests.console.seed import add_device, add_events
from tests.processes import ServerProcess

MINUTE = 60_000_000
HOUR = 60 * MINUTE
REPORT_NAMES = ("web", "apps", "logons", "removable", "usb")


@contextmanager
def logged_in(server: ServerProcess, name: str) -> Iterator[ConsoleClient]:
    http = as_user(server, name)
    try:
        yield http
    finally:
        http.close()


@dataclass(frozen=True)
class Fleet:
    sales: str
    hr: str


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    engine = console_server.engine()
    t = now_us() - 26 * HOUR
    ids = Fleet(
        sales=add_device(engine, "sales-01", group="sales"),
        hr=add_device(engine, "hr-01", group="hr"),
    )
    add_events(
        engine,
        ids.sales,
        [
            logon("taro", t),
            visit("https://mail.example/inbox", "Inbox", "taro", t + MINUTE),
            visit("https://mail.example/inbox", "Inbox", "taro", t + 2 * MINUTE),
            visit("https://docs.example/a", "Doc", "taro", t + 3 * MINUTE),
            focus("LibreOffice", "売上.ods", 25 * MINUTE, "taro", t + 30 * MINUTE),
            focus("Chromium", "Inbox", 5 * MINUTE, "taro", t + 35 * MINUTE),
            removable_copy("/media/taro/STICK/sales-plan.ods", 2048, "taro", t + 40 * MINUTE),
            usb("0781", "5567", "SALES0001", t + 39 * MINUTE, user="taro"),
            logoff("taro", t + 8 * HOUR),
        ],
    )
    add_events(
        engine,
        ids.hr,
        [
            logon("jiro", t),
            visit("https://hr-secret.example/payroll", "Payroll", "jiro", t + MINUTE),
            focus("Evince", "hr-secret-給与.pdf", 60 * MINUTE, "jiro", t + HOUR),
            removable_copy("/media/jiro/X/hr-secret-給与.pdf", 4096, "jiro", t + HOUR),
            usb("0951", "1666", "HRSECRET77", t + HOUR, user="jiro"),
        ],
    )
    return ids


@pytest.fixture(scope="module")
def alice(console_server: ServerProcess, fleet: Fleet) -> Iterator[ConsoleClient]:
    with logged_in(console_server, "alice") as http:
        yield http


def chart(html: str, chart_id: str) -> dict[str, object]:
    found = re.search(
        rf'<script type="application/json" id="{chart_id}">(.*?)</script>', html, re.S
    )
    assert found, chart_id
    value = json.loads(found.group(1))
    assert isinstance(value, dict)
    assert f'data-chart="{chart_id}"' in html
    return value


def test_the_index_lists_every_report(alice: ConsoleClient) -> None:
    page = alice.get("/reports")
    assert page.status_code == 200
    for name in REPORT_NAMES:
        assert f'href="/reports/{name}"' in page.text


def test_web_report(alice: ConsoleClient, fleet: Fleet) -> None:
    page = alice.get("/reports/web", params={"group": "sales"})
    assert page.status_code == 200
    assert re.search(r"<td class=\"wrap\">mail.example</td><td class=\"num\">2</td>", page.text)
    # Over a group the report reads the rollups: no URLs, a hint to pick a device.
    assert "https://docs.example/a" not in page.text and 'id="web-sites-hint"' in page.text
    one_pc = alice.get("/reports/web", params={"device": "sales-01"})
    assert "https://docs.example/a" in one_pc.text
    hours = chart(page.text, "chart-web-hours")
    assert sum(hours["datasets"][0]["data"]) == 3  # type: ignore[index]
    domains = chart(page.text, "chart-web-domains")
    assert domains["labels"] == ["mail.example", "docs.example"]
    assert "hr-secret" not in page.text
    by_device = alice.get("/reports/web", params={"by": "device", "device": "sales-01"})
    assert "<td>sales-01</td>" in by_device.text and "<td>hr-01</td>" not in by_device.text
    by_group = alice.get("/reports/web", params={"by": "group"})
    assert "<td>hr</td>" in by_group.text and "<td>sales</td>" in by_group.text


def test_apps_report(alice: ConsoleClient, fleet: Fleet) -> None:
    page = alice.get("/reports/apps", params={"user": "taro"})
    assert page.status_code == 200
    assert "LibreOffice" in page.text and "売上.ods" in page.text
    assert '<td class="num">25:00</td>' in page.text
    data = chart(page.text, "chart-apps")
    assert data["labels"] == ["LibreOffice", "Chromium"]
    assert data["datasets"][0]["data"] == [25.0, 5.0]  # type: ignore[index]


def test_logons_report(alice: ConsoleClient, fleet: Fleet) -> None:
    page = alice.get("/reports/logons", params={"device": "sales-01"})
    assert page.status_code == 200
    assert "<td>taro</td>" in page.text and "jiro" not in page.text
    assert sum(chart(page.text, "chart-logons")["datasets"][0]["data"]) == 1  # type: ignore[index]


def test_removable_report(alice: ConsoleClient, fleet: Fleet) -> None:
    page = alice.get("/reports/removable")
    assert page.status_code == 200
    assert "/media/taro/STICK/sales-plan.ods" in page.text
    assert '<div class="n" id="removable-files">2</div>' in page.text
    assert "6.0 KiB" in page.text
    chart(page.text, "chart-removable")


def test_usb_report_highlights_mass_storage(alice: ConsoleClient, fleet: Fleet) -> None:
    page = alice.get("/reports/usb")
    assert page.status_code == 200
    assert "0781:5567" in page.text and "SALES0001" in page.text
    assert 'class="storage"' in page.text and "Mass storage" in page.text
    chart(page.text, "chart-usb")


def test_bob_never_sees_the_hr_group_in_reports(
    console_server: ServerProcess, fleet: Fleet
) -> None:
    with logged_in(console_server, "bob") as bob:
        for name in REPORT_NAMES:
            for params in ({}, {"group": "hr"}, {"device": "hr-01"}, {"user": "jiro"}):
                page = bob.get(f"/reports/{name}", params=params)
                assert page.status_code == 200, (name, params)
                # (What bob typed himself comes back in the form and links, nothing else.)
                for secret in ("hr-secret", "HRSECRET77", "0951:1666", "hr-01", "Evince"):
                    if secret not in params.values():
                        assert secret not in page.text, (name, params, secret)
        assert "SALES0001" in bob.get("/reports/usb").text


def test_reports_are_audited(console_server: ServerProcess, fleet: Fleet) -> None:
    with logged_in(console_server, "carol") as carol:
        for name in REPORT_NAMES:
            assert carol.get(f"/reports/{name}", params={"user": "taro"}).status_code == 200
    entries = search_audit(console_server.engine(), actor="carol", action="activity.report").entries
    assert sorted(e.target for e in entries) == sorted(REPORT_NAMES)
    assert all(e.detail_dict()["filters"]["user"] == "taro" for e in entries)


def test_viewer_gets_403_and_no_menu_links(console_server: ServerProcess) -> None:
    with logged_in(console_server, "dave") as dave:
        for url in ("/reports", *(f"/reports/{n}" for n in REPORT_NAMES)):
            assert dave.get(url).status_code == 403, url
        assert 'href="/reports"' not in dave.get("/").text
    with logged_in(console_server, "carol") as carol:
        assert 'href="/reports"' in carol.get("/").text


@pytest.mark.parametrize(
    ("url", "params", "message"),
    [
        ("/reports/web", {"since": "7d", "until": "8d"}, "must be after its start"),
        ("/reports/apps", {"since": "2024-02-30T10:00"}, "is not a time"),
        ("/reports/logons", {"since": "200d"}, "at most 92 days"),
        ("/reports/web", {"by": "planet"}, "not user, device or group"),
        ("/reports/usb", {"group": "g" * 300}, "at most 128 characters"),
    ],
)
def test_bad_report_filters_are_400(
    alice: ConsoleClient, url: str, params: dict[str, str], message: str
) -> None:
    page = alice.get(url, params=params)
    assert page.status_code == 400
    assert message in page.text
