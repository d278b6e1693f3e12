"""The rules pages in a real Chromium: an administrator switches a built-in rule off
and on, and saves a list by typing it and by uploading a file (each form posts its CSRF
token; the browser follows the redirects)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from tests.console.browser import Tab, login
from tests.processes import ServerProcess


def test_an_administrator_switches_a_rule_off_and_on(
    tab: Tab, console_server: ServerProcess
) -> None:
    page = tab.page
    login(page, "alice", next_="/rules")
    expect(page.locator("nav.menu a[aria-current=page]")).to_have_text("Rules")
    row = page.locator('#rules tr[data-rule-id="builtin.software_installed"]')
    expect(row).to_have_attribute("data-enabled", "on")
    row.get_by_role("button", name="Turn off").click()
    expect(page.locator("#rules-message")).to_contain_text("builtin.software_installed")
    expect(row).to_have_attribute("data-enabled", "off")
    expect(row.locator(".badge")).to_have_text(["Info", "Off"])
    row.get_by_role("button", name="Turn on").click()
    expect(row).to_have_attribute("data-enabled", "on")
    assert (
        console_server.scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'rule.enable' "
            "AND target = 'builtin.software_installed'"
        )
        >= 2
    )


def test_an_administrator_saves_a_list_typed_and_uploaded(tab: Tab, tmp_path: Path) -> None:
    page = tab.page
    login(page, "alice", next_="/rules/lists")
    page.locator('#lists tr[data-list="blocked_addresses"] a').click()
    expect(page.locator("h1")).to_contain_text("blocked_addresses")
    entries = page.locator("#list-entries")
    entries.fill("203.0.113.7\n198.51.100.7/24\n")
    page.locator("#list-form").get_by_role("button", name="Save list").click()
    expect(page.locator("#list-error")).to_contain_text("Line 2: 198.51.100.7/24 has host bits set")
    expect(page.locator("#list-entries")).to_have_value("203.0.113.7\n198.51.100.7/24\n")
    page.locator("#list-entries").fill("203.0.113.7\n198.51.100.0/24\n")
    page.locator("#list-form").get_by_role("button", name="Save list").click()
    expect(page.locator("#list-saved")).to_be_visible()
    expect(page.locator("#list-count")).to_have_text("2")
    expect(page.locator("#list-changed")).to_contain_text("by alice")

    upload = tmp_path / "addresses.txt"
    upload.write_text("# from the firewall team\n192.0.2.10\n2001:db8::/32\n192.0.2.11\n", "utf-8")
    page.locator("#list-upload input[type=file]").set_input_files(upload)
    page.locator("#list-upload").get_by_role("button", name="Upload and replace").click()
    expect(page.locator("#list-saved")).to_be_visible()
    expect(page.locator("#list-count")).to_have_text("3")
    expect(page.locator("#list-entries")).to_have_value("192.0.2.10\n2001:db8::/32\n192.0.2.11\n")
    page.goto("/rules/lists")
    expect(page.locator('#lists tr[data-list="blocked_addresses"] td.num')).to_have_text("3")
