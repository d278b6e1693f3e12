"""Searching the logs and reading the reports in a real Chromium: htmx results, export
links that download, and charts that Chart.js really drew under the page's CSP."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.console.browser import Tab, drawn_charts, login
from tests.console.browser_fleet import Fleet, SeededPC, seed_fleet
from tests.processes import ServerProcess


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    return seed_fleet(console_server.engine())


def test_search_the_logs_for_a_web_visit_and_export_it(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    pc = fleet.sales
    login(page, "alice", next_="/logs")
    rows = page.locator("#logs-results tr[data-seq]")
    # The default window (24 h) holds both PCs' seeded activity.
    expect(rows.filter(has_text=fleet.hr.hostname).first).to_be_visible()

    page.evaluate("window.loadedOnce = true")
    page.fill("form[role=search] input[name=q]", f"{pc.host}/quotes")
    with page.expect_response(lambda r: "/logs?" in r.url and "q=" in r.url) as sent:
        page.click("form[role=search] button.primary")
    assert sent.value.request.headers.get("hx-request") == "true"
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-kind", "web.visit")
    expect(rows.first).to_have_attribute("data-device-id", pc.device_id)
    expect(rows.first).to_contain_text(pc.hostname)
    expect(rows.first).to_contain_text(pc.os_user)
    expect(rows.first).to_contain_text(pc.host)
    # The results were swapped in (no page load) and the search is in the address bar.
    assert page.evaluate("window.loadedOnce") is True
    page.wait_for_url("**/logs?*q=*")

    csv_link = page.locator("#logs-results a[href^='/logs/export.csv?']")
    json_link = page.locator("#logs-results a[href^='/logs/export.json?']")
    expect(csv_link).to_have_count(1)
    expect(json_link).to_have_count(1)
    # The links carry the search and download with the browser's session.
    with page.expect_download() as csv_download:
        csv_link.click()
    csv_path = csv_download.value.path()
    csv_text = csv_path.read_text(encoding="utf-8-sig")
    assert pc.url in csv_text
    assert fleet.hr.host not in csv_text
    json_href = json_link.get_attribute("href")
    assert json_href is not None and "q=" in json_href
    exported = page.request.get(json_href)
    assert exported.status == 200
    dumped = json.dumps(exported.json(), ensure_ascii=False)
    assert pc.url in dumped
    assert fleet.hr.host not in dumped


# Each report, and text from the seeded activity that its table must show.
REPORTS: dict[str, Callable[[SeededPC], str]] = {
    "web": lambda pc: pc.host,
    "apps": lambda pc: pc.app,
    "logons": lambda pc: pc.os_user,
    "removable": lambda pc: pc.copied_file,
    "usb": lambda pc: pc.usb_product,
}


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_each_report_draws_its_table_and_chart(tab: Tab, fleet: Fleet, report: str) -> None:
    page = tab.page
    pc: SeededPC = fleet.sales
    login(page, "alice", next_=f"/reports/{report}?since=24h")
    # A table lists the seeded activity.
    expect(page.locator("main table", has_text=REPORTS[report](pc)).first).to_be_visible()
    charts = drawn_charts(page)
    for chart in charts:
        assert chart["width"] > 0 and chart["height"] > 0, chart
    # At least one chart plots the seeded activity.
    assert any(chart["total"] > 0 for chart in charts), charts
    assert not tab.errors, tab.errors
    assert all("favicon.ico" in line for line in tab.http_errors), tab.http_errors
