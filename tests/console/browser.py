"""Browser harness for the console: Playwright driving the system's Chromium.

Browsers cannot be downloaded where the suite runs, so Playwright launches the Debian
``chromium`` binary (``SEKIMORI_CHROMIUM`` overrides where it is). One browser serves
the whole session; every test gets a fresh context (own cookies, own locale), so tests
stay independent and the suite stays quick.

Loaded as a pytest plugin by ``tests/conftest.py``. Fixtures:

- ``chromium``: the session's browser. Skipped, with the reason, when no Chromium is
  installed — except under ``CI=true``, where a missing Chromium fails.
- ``tab``: a fresh context and page on the module's ``console_server``, recording
  console errors and uncaught page errors. A test ends with no JS error and no Content
  Security Policy violation, whatever it asserted (checked at teardown).

Tests that use the browser run after all others (see ``pytest_collection_modifyitems``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    expect,
    sync_playwright,
)

from tests.console.conftest import PASSWORD
from tests.processes import ServerProcess

__all__ = [
    "DrawnChart",
    "Tab",
    "chromium_or_stop",
    "drawn_charts",
    "find_chromium",
    "login",
    "logout",
    "open_tab",
]

# The real binaries first: /usr/bin/chromium is Debian's shell wrapper around them.
_CANDIDATES = (
    "/usr/lib/chromium/chromium",
    "/usr/lib/chromium-browser/chromium-browser",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
)
# Failures should say so in seconds, not after Playwright's default 30 s; yet a loaded
# 2-core machine needs more than expect()'s default 5 s now and then.
TIMEOUT_MS = 10_000
expect.set_options(timeout=TIMEOUT_MS)
# Chromium reports every non-2xx document or fetch as a console error. A 401 after a
# wrong password or a 403 page is what some tests expect: those lines are not JS
# problems and are kept apart from the ones that fail a test.
_HTTP_STATUS = re.compile(r"^Failed to load resource: the server responded with a status of \d+")


def _executable(path: str) -> bool:
    return Path(path).is_file() and os.access(path, os.X_OK)


def find_chromium() -> str | None:
    """The Chromium executable to launch, or None if none is installed.

    ``SEKIMORI_CHROMIUM``, when set, is the only one considered."""
    chosen = os.environ.get("SEKIMORI_CHROMIUM")
    if chosen:
        return chosen if _executable(chosen) else None
    for candidate in _CANDIDATES:
        if _executable(candidate):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_or_stop() -> str:
    """The Chromium to launch. Without one the browser tests are skipped, saying why,
    except under CI, which must run them: there they fail."""
    executable = find_chromium()
    if executable is not None:
        return executable
    chosen = os.environ.get("SEKIMORI_CHROMIUM")
    reason = (
        f"SEKIMORI_CHROMIUM={chosen} is not an executable file"
        if chosen
        else "no Chromium installed (Debian package chromium, or set SEKIMORI_CHROMIUM)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests")
    pytest.skip(reason)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last. While Playwright's sync API is started, its event loop
    counts as running in the main thread (between calls too, by its design), so any
    later ``asyncio.run()`` there fails — the agent's enrollment, for one. The session's
    browser therefore starts only once every other test has run."""
    browser = [item for item in items if "chromium" in getattr(item, "fixturenames", ())]
    if browser:
        others = [item for item in items if "chromium" not in getattr(item, "fixturenames", ())]
        items[:] = others + browser


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the whole session."""
    executable = chromium_or_stop()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page in its own browser context, with what its console said."""

    page: Page
    context: BrowserContext
    # Uncaught exceptions and console errors (CSP violations are console errors).
    errors: list[str] = field(default_factory=list)
    # Console errors that only report an HTTP error status of a loaded resource.
    http_errors: list[str] = field(default_factory=list)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        (self.http_errors if _HTTP_STATUS.match(text) else self.errors).append(
            f"{text} ({message.location.get('url', '')})"
        )

    def _on_page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error.message}")


def open_tab(browser: Browser, server: ServerProcess, locale: str = "en-US") -> Tab:
    """A fresh context (no cookies; ``locale`` sets Accept-Language) and page on ``server``."""
    context = browser.new_context(base_url=f"http://127.0.0.1:{server.console_port}", locale=locale)
    context.set_default_timeout(TIMEOUT_MS)
    tab = Tab(page=context.new_page(), context=context)
    tab.page.on("console", tab._on_console)
    tab.page.on("pageerror", tab._on_page_error)
    return tab


@pytest.fixture
def tab(chromium: Browser, console_server: ServerProcess) -> Iterator[Tab]:
    """A fresh English-speaking browser tab on the module's console server."""
    opened = open_tab(chromium, console_server)
    try:
        yield opened
    finally:
        opened.context.close()
    assert not opened.errors, "the page logged errors:\n" + "\n".join(opened.errors)


def login(page: Page, user: str, password: str = PASSWORD, next_: str = "/account") -> None:
    """Log in through the form, as a person would; returns once logged in, on ``next_``."""
    page.goto("/login?next=" + quote(next_, safe=""))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("form[action='/login'] button")
    expect(page.locator("header .who .user")).to_have_text(user)
    assert urlsplit(page.url).path == urlsplit(next_).path, page.url
    # The click returns once the next page starts to arrive; its deferred scripts
    # (htmx, console.js) bind only later, and a test typing before that would see
    # nothing happen on a loaded machine.
    page.wait_for_load_state("load")


def logout(page: Page) -> None:
    """Log out with the header button; returns on the login page."""
    page.click("form[action='/logout'] button")
    page.wait_for_url("**/login")
    expect(page.locator("input[name=username]")).to_be_visible()


class DrawnChart(TypedDict):
    """What Chart.js made of one ``<canvas data-chart>``."""

    id: str
    width: int
    height: int
    # The sum of every data point plotted.
    total: float


_CHARTS_DRAWN = """() => {
    const canvases = Array.from(document.querySelectorAll("canvas[data-chart]"));
    return canvases.length > 0 && canvases.every((c) => window.Chart && Chart.getChart(c));
}"""
_READ_CHARTS = """() => Array.from(document.querySelectorAll("canvas[data-chart]")).map((c) => {
    const data = Chart.getChart(c).data.datasets.flatMap((d) => d.data);
    return {
        id: c.dataset.chart,
        width: c.width,
        height: c.height,
        total: data.reduce((sum, n) => sum + Number(n), 0),
    };
})"""


def drawn_charts(page: Page) -> list[DrawnChart]:
    """Waits until Chart.js drew every chart canvas of the page (console.js does it after
    DOMContentLoaded, and fails if the CSP blocked the scripts), then reads them."""
    page.wait_for_function(_CHARTS_DRAWN)
    charts: list[DrawnChart] = page.evaluate(_READ_CHARTS)
    return charts
