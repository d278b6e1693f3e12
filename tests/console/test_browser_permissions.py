"""Roles and device groups as a person meets them in a real Chromium: the menu shows
only what the role may open, and typing the address of anything else is refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.console.browser import Tab, login
from tests.console.browser_fleet import Fleet, seed_fleet
from tests.processes import ServerProcess

# Every page behind a permission, and one address in it.
GUARDED = {
    "devices": "/devices",
    "logs": "/logs",
    "reports": "/reports/web",
    "enrollment": "/enrollment",
    "audit": "/audit",
    "users": "/users",
}


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    return seed_fleet(console_server.engine())


def _menu(page: Page) -> list[str]:
    return [text.strip() for text in page.locator("nav.menu a").all_inner_texts()]


def _refused(page: Page, path: str) -> None:
    response = page.goto(path)
    assert response is not None and response.status == 403, (path, response)
    expect(page.locator("main h1")).to_have_text("Not allowed")


def _reached(page: Page, path: str) -> None:
    response = page.goto(path)
    assert response is not None and response.status == 200, (path, response)
    expect(page.locator("main h1")).not_to_have_text("Not allowed")


def test_a_viewer_sees_only_the_dashboard(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    login(page, "dave", next_="/")
    assert _menu(page) == ["Dashboard"]
    # The dashboard's figures are there, but nothing on it leads to a device.
    expect(page.locator("main a[href^='/devices/']")).to_have_count(0)
    for path in GUARDED.values():
        _refused(page, path)
    _refused(page, f"/devices/{fleet.sales.device_id}")
    _refused(page, f"/logs/export.csv?q={fleet.sales.host}")
    # Still logged in and still allowed the dashboard after all those refusals.
    _reached(page, "/")


def test_an_operator_sees_only_the_devices_of_its_groups(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    login(page, "bob", next_="/devices")
    assert _menu(page) == [
        "Dashboard",
        "Devices",
        "Vulnerabilities",
        "Alerts",
        "Logs",
        "Reports",
        "Enrollment",
        "Actions",
    ]
    rows = page.locator("#devices tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-device-id", fleet.sales.device_id)
    expect(page.locator("#devices")).not_to_contain_text(fleet.hr.hostname)
    # Searching for the other group's PC by name finds nothing either.
    _reached(page, f"/devices?q={fleet.hr.hostname}")
    expect(page.locator("#devices tbody tr")).to_have_count(0)

    _reached(page, f"/devices/{fleet.sales.device_id}?tab=activity")
    expect(page.locator("#timeline")).to_contain_text(fleet.sales.host)
    # The hr PC's pages do not exist for bob: not found, not "not allowed" (which would
    # confirm the id).
    for tab_name in ("overview", "software", "activity"):
        response = page.goto(f"/devices/{fleet.hr.device_id}?tab={tab_name}")
        assert response is not None and response.status == 404
        expect(page.locator("main h1")).to_have_text("Not found")
        expect(page.locator("main")).not_to_contain_text(fleet.hr.hostname)
    for path in (GUARDED["audit"], GUARDED["users"]):
        _refused(page, path)


def test_an_auditor_reads_logs_and_the_audit_trail_but_not_devices(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    login(page, "carol", next_="/")
    assert _menu(page) == ["Dashboard", "Vulnerabilities", "Logs", "Reports", "Audit trail"]
    for path in ("/logs", "/reports/web", "/audit"):
        _reached(page, path)
    for path in ("/devices", "/enrollment", "/users"):
        _refused(page, path)
    _refused(page, f"/devices/{fleet.sales.device_id}")
