"""Live view in a real Chromium, under the console's CSP: the page opens the
WebSocket, draws the PC's pictures on its canvas and counts them, the PC shows the
indicator meanwhile, and Stop ends the session and removes it."""

from __future__ import annotations

from playwright.sync_api import expect

from sekimori.agent.indicator import INDICATOR_TITLE
from tests.console.browser import Tab, login
from tests.console.test_live import LivePC, pc_fixture, windows  # noqa: F401 - the fixture
from tests.processes import wait_for


def test_the_viewer_page_shows_the_screen_live_and_stops(tab: Tab, pc: LivePC) -> None:
    page = tab.page
    login(page, "alice", next_=f"/devices/{pc.device_id}")
    page.click("#device-live")
    expect(page.locator("h1")).to_contain_text("Live view")
    state = page.locator("#live-state")
    expect(state).to_have_attribute("data-state", "idle")
    page.click("#live-start")
    expect(state).to_have_attribute("data-state", "started", timeout=20_000)
    expect(state).to_have_text("Live")
    # Pictures arrive and are drawn: the canvas takes their size (half of 1280x800).
    page.wait_for_function(
        "() => Number(document.getElementById('live').dataset.frames || 0) >= 6",
        timeout=15_000,
    )
    expect(page.locator("#live-canvas")).to_have_js_property("width", 640)
    expect(page.locator("#live-canvas")).to_have_js_property("height", 400)
    assert windows(pc.desktop, INDICATOR_TITLE)
    page.click("#live-stop")
    expect(state).to_have_attribute("data-state", "closed")
    expect(page.locator("#live-start")).to_be_enabled()
    wait_for(lambda: not windows(pc.desktop, INDICATOR_TITLE), 10, "indicator removed", 0.1)
