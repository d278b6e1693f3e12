"""The screen timeline player in a real Chromium (under the console's CSP): it opens
at the frame nearest the jump-to time, steps, scrubs and plays through the frames,
and each frame it shows is a real picture decoded by the browser."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from sekimori.clock import now_us
from tests.console.browser import Tab, login
from tests.processes import ServerProcess
from tests.screen_frames import FrameEvent, picture, screen_frame, send_frames

SECOND = 1_000_000


@pytest.fixture(scope="module")
def pc(
    console_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[int]]:
    base: Path = tmp_path_factory.mktemp("browser-screens")
    start = now_us() - 900 * SECOND
    times = [start + i * 30 * SECOND for i in range(4)]

    def seed() -> str:
        identity = console_server.enroll(base / "pc", group="sales")
        ack = send_frames(
            console_server,
            identity,
            [
                FrameEvent(
                    i + 1, t, "hanako", screen_frame(picture(f"frame {i}"), title=f"Window {i}")
                )
                for i, t in enumerate(times)
            ],
        )
        assert ack.rejected == []
        return identity.device_id

    # Playwright's sync API runs an event loop in this thread; the agent side runs its
    # own (asyncio.run) in another.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(seed).result(), times


def _shown(page: Page) -> tuple[str | None, int]:
    """The frame's URL and its decoded width (0 until the picture has loaded)."""
    img = page.locator("#screen-frame")
    expect(img).to_have_js_property("complete", True)
    width = int(img.evaluate("i => i.naturalWidth"))
    return img.get_attribute("src"), width


def test_player_steps_scrubs_and_plays(tab: Tab, pc: tuple[str, list[int]]) -> None:
    device_id, times = pc
    page = tab.page
    login(page, "alice", next_=f"/devices/{device_id}/screens?at={times[1] + 2 * SECOND}")
    position = page.locator("#screen-position")
    expect(position).to_have_text("2 / 4")
    src, width = _shown(page)
    assert src == f"/screens/frames/{device_id}/2.png" and width == 320
    expect(page.locator("#screen-caption")).to_contain_text("Window 1")

    page.click("[data-player=next]")
    expect(position).to_have_text("3 / 4")
    expect(page.locator("#screen-frame")).to_have_attribute(
        "src", f"/screens/frames/{device_id}/3.png"
    )
    expect(page.locator("tr[data-seq='3']")).to_have_attribute("aria-current", "true")
    assert _shown(page)[1] == 320

    page.click("[data-player=prev]")
    page.click("[data-player=prev]")
    expect(position).to_have_text("1 / 4")
    page.click("[data-player=prev]")  # at the first frame: stays
    expect(position).to_have_text("1 / 4")

    page.locator("[data-player=scrub]").fill("3")
    expect(position).to_have_text("4 / 4")
    expect(page.locator("#screen-caption")).to_contain_text("Window 3")

    page.click("[data-player=scrub]")  # focus away from the buttons
    page.locator("tr[data-seq='1'] a[data-player-goto]").click()
    expect(position).to_have_text("1 / 4")
    play = page.locator("[data-player=play]")
    play.click()
    expect(play).to_have_text("Pause")
    # Plays to the last frame, then stops by itself.
    expect(position).to_have_text("4 / 4", timeout=15_000)
    expect(play).to_have_text("Play")
    assert _shown(page) == (f"/screens/frames/{device_id}/4.png", 320)
