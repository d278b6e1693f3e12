"""Remote control in a real Chromium, under the console's CSP: "Request control" opens
the action page for this PC with remote_control chosen; once the command is signed
(here with an operator key, as ``sekimori sign`` would) and the PC's user allowed it,
a click on the picture lands on the PC's xterm (it becomes the active window) and
what is typed on the page reaches ``cat`` in it."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from sekimori.agent.indicator import CONTROL_CONSENT_TITLE, CONTROL_INDICATOR_TITLE
from sekimori.protocol.actions import RemoteControlParams
from sekimori.server import actions as service
from tests.console.browser import Tab, login
from tests.console.test_remote_control import (  # noqa: F401 - the fixture
    OPERATOR,
    ControlledPC,
    _windows,
    pc_fixture,
)
from tests.processes import wait_for


def test_request_control_sign_and_type_from_the_browser(tab: Tab, pc: ControlledPC) -> None:
    page = tab.page
    login(page, "alice", next_=f"/devices/{pc.device_id}/live")
    control = page.locator("#live-control-state")
    expect(control).to_have_attribute("data-control", "off")
    expect(page.locator("#live-control")).to_be_disabled()
    page.click("#live-start")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "started", timeout=20_000)
    page.wait_for_function(
        "() => Number(document.getElementById('live').dataset.frames || 0) >= 2", timeout=15_000
    )
    with page.context.expect_page() as opened:
        page.click("#live-control")
    signing = opened.value
    signing.wait_for_load_state()
    assert re.search(rf"/actions/new\?action=remote_control&device={pc.device_id}$", signing.url), (
        signing.url
    )
    signing.close()
    # No grant yet: the page waits (and sends nothing the server would forward).
    expect(control).to_have_attribute("data-control", "none", timeout=10_000)
    engine = pc.server.engine()
    nonce = service.create_command(
        engine, RemoteControlParams(max_seconds=120), [pc.device_id], requested_by="alice"
    )
    view = service.command_view(engine, nonce)
    service.add_command_signature(engine, nonce, OPERATOR.sign(view.digest), OPERATOR.name)
    dialog = pc.desktop.wait_window(CONTROL_CONSENT_TITLE.replace("?", r"\?"), timeout=30)
    pc.desktop.focus(dialog)
    pc.desktop.xdotool("key", "Return")
    expect(control).to_have_attribute(
        "data-control", re.compile("^(ready|granted)$"), timeout=15_000
    )
    assert _windows(pc.desktop, CONTROL_INDICATOR_TITLE)
    # Something else is active on the PC; a click on the xterm in the picture makes it
    # the active window there (the picture is half the screen's size).
    other = pc.desktop.xterm("elsewhere")
    pc.desktop.focus(other.window)
    geometry = pc.desktop.xdotool("getwindowgeometry", "--shell", str(pc.window))
    values = dict(line.split("=", 1) for line in geometry.split())
    x, y = int(values["X"]) + 40, int(values["Y"]) + 60
    canvas = page.locator("#live-canvas")
    box = canvas.bounding_box()
    assert box is not None
    scale = box["width"] / 640
    canvas.click(position={"x": x / 2 * scale, "y": y / 2 * scale})
    wait_for(lambda: pc.desktop.active_window() == pc.window, 10, "the xterm active", 0.1)
    page.keyboard.type("Hi there!")
    page.keyboard.press("Enter")
    wait_for(
        lambda: pc.typed.exists() and pc.typed.read_text().endswith("Hi there!\n"),
        15,
        "the typed text",
        0.1,
    )
    expect(control).to_have_attribute("data-control", "granted")
    page.click("#live-stop")
    expect(control).to_have_attribute("data-control", "ended")
    wait_for(lambda: not _windows(pc.desktop, CONTROL_INDICATOR_TITLE), 15, "bar removed", 0.1)
