"""Vulnerabilities in a real Chromium: from the list (known exploited only) to a
vulnerability's page, on to the exposed PC's vulnerabilities tab; and the patch
compliance chart drawn by Chart.js under the console's CSP."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.console.browser import Tab, drawn_charts, login
from tests.console.vuln_seed import WEBP, VulnFleet, seed_vuln_fleet
from tests.processes import ServerProcess


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> VulnFleet:
    return seed_vuln_fleet(console_server.engine())


def test_list_to_vulnerability_to_device_tab_and_chart(tab: Tab, fleet: VulnFleet) -> None:
    page = tab.page
    login(page, "alice", next_="/vulnerabilities")
    expect(page.locator("#stale-feeds")).to_be_visible()  # the NVD import is 10 days old
    page.get_by_label("Known exploited only").check()
    page.locator("#vuln-filters button").click()
    page.wait_for_url("**kev=1*")
    rows = page.locator("#vulns tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".badge.kev")).to_be_visible()

    page.get_by_role("link", name=WEBP, exact=True).click()
    page.wait_for_url(f"**/vulnerabilities/{WEBP}")
    expect(page.locator("#kev-added")).to_have_text("2023-09-13")
    exposed = page.locator(f"#exposed-devices tr[data-device-id='{fleet.hr_fedora}']")
    expect(exposed).to_contain_text("1.3.2")
    expect(exposed.locator(".badge.low-confidence")).to_be_visible()

    exposed.get_by_role("link", name="hr-fedora").click()
    page.wait_for_url(f"**/devices/{fleet.hr_fedora}?tab=vulnerabilities")
    expect(page.locator("#device-vulns")).to_have_attribute("aria-current", "page")
    expect(page.locator(f"#findings tr[data-vuln-id='{WEBP}']")).to_contain_text("Known exploited")

    page.get_by_role("link", name="Vulnerabilities", exact=True).first.click()
    page.get_by_role("link", name="Patch compliance").first.click()
    page.wait_for_url("**/vulnerabilities/compliance")
    charts = drawn_charts(page)
    assert [c["id"] for c in charts] == ["compliance-chart"]
    assert charts[0]["width"] > 0 and charts[0]["total"] > 0
    # Choosing another threshold reloads the page with it.
    page.select_option("select[name=days]", "0")
    page.wait_for_url("**days=0*")
    expect(page.locator("#compliance h2")).to_contain_text("0 days")
