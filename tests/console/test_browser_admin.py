"""Administration through the console's forms in a real Chromium: enrollment tokens,
device revocation, new users (each form posts its CSRF token; the browser follows the
redirects)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.console.browser import Tab, login, open_tab
from tests.console.browser_fleet import Fleet, seed_fleet
from tests.processes import ServerProcess


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    return seed_fleet(console_server.engine())


def test_an_operator_creates_a_token_sees_it_once_and_revokes_it(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    login(page, "bob", next_="/enrollment")
    # bob may enroll only into his own group.
    groups = page.locator("#create-token select[name=group] option")
    expect(groups).to_have_text([fleet.sales.group])
    page.click("#create-token button.primary")
    expect(page.locator("#new-token h2")).to_contain_text(fleet.sales.group)
    command = page.locator("#enroll-command").inner_text()
    assert "sekimori" in command and "enroll" in command, command
    token = page.locator("#tokens tbody tr[data-state=valid]")
    expect(token).to_have_count(1)
    expect(token).to_contain_text("bob")
    # The command is shown once: not after a reload.
    page.goto("/enrollment")
    expect(page.locator("#new-token")).to_have_count(0)
    expect(page.locator("#enroll-command")).to_have_count(0)

    token.get_by_role("button", name="Revoke").click()
    expect(page.locator("#tokens tbody tr[data-state=revoked]")).to_have_count(1)
    expect(page.locator("#tokens tbody tr[data-state=valid]")).to_have_count(0)


def test_an_administrator_revokes_a_device(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    pc = fleet.hr
    login(page, "alice", next_=f"/devices/{pc.device_id}")
    confirm = page.locator("#revoke-confirm")
    expect(confirm).to_be_hidden()  # behind a <details> until asked for
    page.locator("details.revoke summary").click()
    expect(confirm).to_have_text(f"Yes, revoke {pc.hostname}")
    confirm.click()
    expect(page.locator("#device-status")).to_contain_text("Revoked")
    expect(page.locator("#revoke-confirm")).to_have_count(0)
    page.goto("/devices?status=revoked")
    rows = page.locator("#devices tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-device-id", pc.device_id)


def test_an_administrator_adds_a_user_who_then_logs_in_within_its_scope(
    tab: Tab, fleet: Fleet, chromium: Browser, console_server: ServerProcess
) -> None:
    page = tab.page
    login(page, "alice", next_="/users")
    form = page.locator("form[action='/users']")
    form.locator("input[name=username]").fill("grace")
    form.locator("select[name=role]").select_option("operator")
    form.locator("select[name=groups]").select_option([fleet.sales.group])
    form.get_by_role("button", name="Add user").click()
    expect(page.locator("#new-password-card h2")).to_contain_text("grace")
    password = page.locator("#new-password").inner_text().strip()
    assert len(password) >= 12
    row = page.locator("#users tr[data-user=grace]")
    expect(row).to_contain_text("Operator")
    expect(row).to_contain_text(fleet.sales.group)

    grace = open_tab(chromium, console_server)
    try:
        login(grace.page, "grace", password, next_="/devices")
        expect(grace.page.locator("nav.menu a")).to_have_text(
            [
                "Dashboard",
                "Devices",
                "Vulnerabilities",
                "Alerts",
                "Logs",
                "Reports",
                "Enrollment",
                "Actions",
            ]
        )
        rows = grace.page.locator("#devices tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-device-id", fleet.sales.device_id)
        assert not grace.errors, grace.errors
    finally:
        grace.context.close()
