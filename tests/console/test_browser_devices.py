"""Finding a device in a real Chromium: the htmx search, its inventory, its timeline."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.console.browser import Tab, drawn_charts, login, logout
from tests.console.browser_fleet import Fleet, seed_fleet
from tests.processes import ServerProcess


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    return seed_fleet(console_server.engine())


def test_find_a_device_and_read_its_inventory_and_activity(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    pc = fleet.sales
    login(page, "alice", next_="/devices")
    rows = page.locator("#devices tbody tr")
    expect(rows).to_have_count(2)
    # Typing in the search box swaps the table in place (htmx), without a page load.
    page.evaluate("window.loadedOnce = true")
    with page.expect_response(lambda r: "/devices?" in r.url and "q=sales-pc" in r.url) as sent:
        page.get_by_role("searchbox").press_sequentially("sales-pc")
    assert sent.value.request.headers.get("hx-request") == "true"
    expect(rows).to_have_count(1)
    expect(page.locator(f"tr[data-device-id='{pc.device_id}']")).to_be_visible()
    assert page.evaluate("window.loadedOnce") is True
    # htmx pushed the search into the address bar: the search can be shared or reloaded.
    page.wait_for_url("**/devices?*q=sales-pc*")

    page.get_by_role("link", name=pc.hostname).click()
    page.wait_for_url(f"**/devices/{pc.device_id}")
    expect(page.locator("h1")).to_contain_text(pc.hostname)
    hardware = page.locator("#hardware")
    expect(hardware).to_contain_text("ThinkPad T14 Gen 4")
    expect(hardware).to_contain_text(pc.serial)
    expect(page.locator("#disks")).to_contain_text("WDC PC SN740")
    expect(page.locator("#interfaces")).to_contain_text("8c:16:45:aa:bb:cc")

    page.get_by_role("link", name="Software").click()
    expect(page.locator(f"#packages tr[data-package='{pc.package}']")).to_contain_text("1.2.3-1")

    page.get_by_role("link", name="Activity").click()
    page.wait_for_url("**tab=activity")
    timeline = page.locator("#timeline tbody tr")
    expect(page.locator("#timeline tr[data-kind='web.visit']")).to_contain_text(pc.host)
    expect(page.locator("#timeline tr[data-kind='session.logon']")).to_contain_text(pc.os_user)
    expect(page.locator("#timeline tr[data-kind='file.copied_to_removable']")).to_contain_text(
        pc.copied_file
    )
    # Only this PC's events.
    expect(timeline.filter(has_text=fleet.hr.host)).to_have_count(0)
    # The kind filter narrows the timeline to one kind.
    page.select_option("#activity select[name=kind]", "web.visit")
    page.wait_for_url("**kind=web.visit*")
    expect(timeline).to_have_count(1)
    expect(timeline.first).to_contain_text(pc.host)


def test_the_dashboard_counts_the_devices_in_scope_and_draws_its_chart(
    tab: Tab, fleet: Fleet
) -> None:
    page = tab.page
    login(page, "alice", next_="/")
    expect(page.locator("[data-stat=total] .n")).to_have_text("2")
    (chart,) = drawn_charts(page)
    assert chart["width"] > 0 and chart["height"] > 0, chart
    # Both PCs' seeded events of the last 24 hours are plotted (hardware and software
    # inventory included: 9 events each).
    assert chart["total"] == 18, chart
    expect(
        page.locator(f"#latest-devices tr[data-device-id='{fleet.hr.device_id}']")
    ).to_be_visible()
    logout(page)

    login(page, "bob", next_="/")
    expect(page.locator("[data-stat=total] .n")).to_have_text("1")
    (chart,) = drawn_charts(page)
    assert chart["total"] == 9, chart
    expect(page.locator("#latest-devices tbody tr")).to_have_count(1)
    expect(page.locator("#latest-devices")).not_to_contain_text(fleet.hr.hostname)
