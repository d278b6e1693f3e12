"""The policy editor in a real Chromium: an administrator edits a group's policy
through the form, is shown a bad value next to its field, sees what changes, and
saves a new version."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from sekimori.server.store.policies import current_policy
from sekimori.server.store.policy_overview import group_policies
from sekimori.server.store.scope import EVERYTHING
from tests.console.browser import Tab, login
from tests.console.seed import add_device
from tests.processes import ServerProcess


@pytest.fixture(scope="module")
def group_id(console_server: ServerProcess) -> int:
    add_device(console_server.engine(), "kiosk-1", group="kiosks")
    return next(
        g.group_id
        for g in group_policies(console_server.engine(), EVERYTHING)
        if g.name == "kiosks"
    )


def test_an_administrator_edits_previews_and_saves_a_policy(
    tab: Tab, console_server: ServerProcess, group_id: int
) -> None:
    page = tab.page
    login(page, "alice", next_="/policies")
    row = page.locator(f"#policies tr[data-group-id='{group_id}']")
    expect(row).to_contain_text("No policy yet")
    expect(row).to_contain_text("not yet reported: 1")
    row.get_by_role("link", name="kiosks").click()
    expect(page.locator("h1")).to_have_text("Policy of kiosks")

    form = page.locator("#policy-form")
    page.locator("#field-collector_web").uncheck()
    form.get_by_label("Collect during working hours only").check()
    form.get_by_label("Time zone").fill("Asia/Tokio")
    page.locator("#field-retention_web").fill("30")
    form.get_by_role("button", name="Preview changes").click()

    # A misspelt time zone: refused at the field, nothing saved, the input kept.
    error = page.locator("#error-wh_timezone")
    expect(error).to_contain_text("privacy.working_hours_only.timezone")
    expect(error).to_contain_text("not a known time zone")
    expect(page.locator("#field-wh_timezone")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#confirm")).to_have_count(0)
    expect(page.locator("#field-collector_web")).not_to_be_checked()
    expect(page.locator("#field-retention_web")).to_have_value("30")

    form.get_by_label("Time zone").fill("Asia/Tokyo")
    form.get_by_role("button", name="Preview changes").click()
    changes = page.locator("#changes")
    expect(changes.locator("tr[data-path='collectors.web.enabled']")).to_contain_text(
        "Web browsing: collected"
    )
    expect(changes.locator("tr[data-path='collectors.web.enabled'] td.new")).to_have_text("Off")
    expect(changes.locator("tr[data-path='retention_days.web'] td.new")).to_have_text("30 days")
    expect(changes.locator("tr[data-path='privacy.working_hours_only'] td.new")).to_have_text("On")
    assert current_policy(console_server.engine(), group_id) is None  # not saved yet

    page.locator("#confirm textarea[name=comment]").fill("Kiosks: office hours only")
    page.get_by_role("button", name="Save as version 1").click()
    expect(page.locator("#saved")).to_have_text("Version 1 saved.")
    expect(page.locator("#policy-version")).to_contain_text("v1")
    expect(page.locator("#field-collector_web")).not_to_be_checked()
    stored = current_policy(console_server.engine(), group_id)
    assert stored is not None and stored.version == 1
    assert stored.comment == "Kiosks: office hours only"
    assert not stored.policy.collectors.web.enabled
    assert stored.policy.retention_days.web == 30

    page.get_by_role("link", name="History").first.click()
    version = page.locator("#v1")
    expect(version).to_contain_text("Kiosks: office hours only")
    expect(version.locator("tr[data-path='retention_days.web'] td.new")).to_have_text("30 days")
    expect(page.locator("#behind-devices tbody tr")).to_have_count(1)
