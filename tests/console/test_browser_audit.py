"""The audit trail in a real Chromium: what people did in the console, as they did it."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Locator, expect

from tests.console.browser import Tab, login, logout
from tests.console.browser_fleet import Fleet, seed_fleet
from tests.processes import ServerProcess


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    return seed_fleet(console_server.engine())


def _entries(rows: Locator, action: str) -> Locator:
    return rows.locator(f"xpath=self::*[@data-action='{action}']")


def test_the_audit_trail_lists_the_logins_and_searches_made(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    wanted = f"audit-probe-{uuid.uuid4().hex[:8]}"

    # carol, an auditor, fails once, logs in, searches the logs, and leaves.
    page.goto("/login")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", "a wrong password, once")
    page.click("form[action='/login'] button")
    expect(page.get_by_role("alert")).to_be_visible()
    login(page, "carol", next_=f"/logs?q={wanted}")
    expect(page.locator("#logs-count")).to_be_visible()
    logout(page)

    # alice looks at the sales PC's timeline, then at the audit trail.
    login(page, "alice", next_=f"/devices/{fleet.sales.device_id}?tab=activity")
    expect(page.locator("#timeline")).to_be_visible()
    page.get_by_role("link", name="Audit trail").click()
    page.wait_for_url("**/audit")
    rows = page.locator("#audit tbody tr[data-seq]")

    carol = rows.filter(has=page.locator("td:nth-child(2)", has_text="carol"))
    expect(_entries(carol, "login.failed")).to_have_count(1)
    expect(_entries(carol, "login.failed")).to_contain_text("127.0.0.1")
    expect(_entries(carol, "login")).to_have_count(1)
    expect(_entries(carol, "logout")).to_have_count(1)
    search = _entries(carol, "activity.search")
    expect(search).to_have_count(1)
    expect(search).to_contain_text(wanted)

    alice = rows.filter(has=page.locator("td:nth-child(2)", has_text="alice"))
    expect(_entries(alice, "login")).to_have_count(1)
    timeline = _entries(alice, "activity.view_device")
    expect(timeline).to_have_count(1)
    expect(timeline).to_contain_text(fleet.sales.device_id)
    # Newest first: alice's timeline view comes before carol's search.
    actions = rows.evaluate_all("rows => rows.map((r) => r.dataset.action)")
    assert actions.index("activity.view_device") < actions.index("activity.search"), actions

    # Searching the trail narrows it down (and the search itself is recorded).
    page.fill("form.filters input[name=actor]", "carol")
    page.click("form.filters button.primary")
    page.wait_for_url("**/audit?*actor=carol*")
    expect(rows.filter(has_text="alice")).to_have_count(0)
    expect(_entries(rows, "activity.search")).to_contain_text(wanted)

    # Nobody edited the trail behind the console's back: the hash chain holds.
    page.click("form[action='/audit/verify'] button")
    expect(page.locator("[data-chain]")).to_have_attribute("data-chain", "intact")
