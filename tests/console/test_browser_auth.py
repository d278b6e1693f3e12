"""Logging in and out, TOTP enrolment and the language, in a real Chromium."""

from __future__ import annotations

import time

import pyotp
from playwright.sync_api import Browser, expect

from sekimori.server.store.users import create_user
from tests.console.browser import Tab, login, logout, open_tab
from tests.console.conftest import PASSWORD
from tests.processes import ServerProcess


def test_login_wrong_password_and_logout(tab: Tab) -> None:
    page = tab.page
    page.goto("/account")
    # Not logged in: the login form, which comes back to the page asked for.
    page.wait_for_url("**/login?next=%2Faccount")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not the right password")
    page.click("form[action='/login'] button")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page.locator("header")).to_have_count(0)

    # The retry still goes back to the page asked for.
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button")
    page.wait_for_url("**/account")
    expect(page.locator("header .who .user")).to_have_text("alice")
    expect(page.locator("header .role")).to_have_text("Administrator")
    expect(page.locator("nav.menu a").first).to_have_text("Dashboard")

    logout(page)
    # The session is gone: pages need a login again.
    page.goto("/account")
    page.wait_for_url("**/login?next=%2Faccount")


def test_totp_enrolment_then_login_with_a_code(tab: Tab, console_server: ServerProcess) -> None:
    create_user(console_server.engine(), "frank", PASSWORD, "viewer", all_groups=True)
    page = tab.page
    login(page, "frank")
    page.goto("/account")
    secret = page.locator("#totp-secret").inner_text().strip()
    expect(page.locator("#totp-qr svg")).to_be_visible()
    totp = pyotp.TOTP(secret)
    page.fill("form[action='/account/totp'] input[name=code]", totp.now())
    page.click("form[action='/account/totp'] button")
    expect(page.get_by_role("status")).to_have_text("Two-factor authentication is on.")
    logout(page)

    page.goto("/login?next=%2Faccount")
    page.fill("input[name=username]", "frank")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button")
    page.wait_for_url("**/login/totp*")
    expect(page.locator("header")).to_have_count(0)
    # The enrolment used this step's code, and a code works once: the next step's code
    # is accepted too (one step of clock drift either side).
    page.fill("input[name=code]", totp.at(time.time() + totp.interval))
    page.click("form[action='/login/totp'] button")
    page.wait_for_url("**/account")
    expect(page.locator("header .who .user")).to_have_text("frank")
    expect(page.locator("#totp-secret")).to_have_count(0)
    expect(page.locator("form[action='/account/totp/disable']")).to_be_visible()


def test_language_switch_in_the_header(tab: Tab) -> None:
    page = tab.page
    login(page, "erin")
    menu = page.locator("nav.menu a")
    expect(menu).to_have_text(
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
    page.select_option("header select[name=locale]", "ja")
    expect(menu).to_have_text(
        [
            "ダッシュボード",
            "デバイス",
            "脆弱性",
            "アラート",
            "ログ",
            "レポート",
            "登録",
            "リモート操作",
        ]
    )
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    # The choice belongs to the account: it holds on the next page.
    page.goto("/account")
    expect(menu.first).to_have_text("ダッシュボード")
    page.select_option("header select[name=locale]", "en")
    expect(menu.first).to_have_text("Dashboard")


def test_a_japanese_browser_gets_japanese_without_any_setting(
    chromium: Browser, console_server: ServerProcess
) -> None:
    japanese = open_tab(chromium, console_server, locale="ja-JP")
    try:
        japanese.page.goto("/login")
        expect(japanese.page.locator("html")).to_have_attribute("lang", "ja")
        expect(japanese.page.locator("form[action='/login'] button")).to_have_text("ログイン")
        expect(japanese.page.get_by_label("ユーザー名")).to_be_visible()
        assert not japanese.errors, japanese.errors
    finally:
        japanese.context.close()
    english = open_tab(chromium, console_server, locale="en-US")
    try:
        english.page.goto("/login")
        expect(english.page.locator("form[action='/login'] button")).to_have_text("Log in")
    finally:
        english.context.close()
