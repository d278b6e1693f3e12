"""The browser harness itself: which Chromium it launches, and what happens without one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.console.browser import chromium_or_stop, find_chromium


def test_the_session_browser_is_the_system_chromium(chromium: Browser) -> None:
    found = find_chromium()
    assert found is not None and os.access(found, os.X_OK)
    assert chromium.is_connected()
    assert chromium.version.split(".")[0].isdigit()


def test_an_override_is_used_when_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("SEKIMORI_CHROMIUM", str(fake))
    assert find_chromium() is None  # not executable yet
    fake.chmod(0o755)
    assert find_chromium() == str(fake)


def test_no_chromium_skips_locally_and_fails_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEKIMORI_CHROMIUM", str(tmp_path / "missing"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="is not an executable file"):
        chromium_or_stop()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser tests"):
        chromium_or_stop()


def test_browser_tests_run_after_the_rest(request: pytest.FixtureRequest) -> None:
    """Nothing that needs asyncio.run() may follow the browser (see browser.py)."""
    items = request.session.items
    uses = ["chromium" in getattr(item, "fixturenames", ()) for item in items]
    assert uses == sorted(uses), [item.nodeid for item in items]
