"""A rule firing asks the PC for what was on its screen around that moment (issue 6,
"when a rule fires (a short burst around it)"), end to end: a real server, a real
agent with its screens and files collectors on a real X display, a file copied to a
folder the agent treats as removable media -> the built-in rule opens an alert -> the
server sends ``screen_burst`` after the commit -> the screens collector sends its
kept and following frames, stored with trigger "rule"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.desktop import Desktop, desktop_fixture  # noqa: F401 - the fixture
from tests.processes import AgentProcess, ServerProcess, wait_for


def _events(server: ServerProcess, device_id: str, kind: str) -> list[dict[str, Any]]:
    result = server.cli(
        "events", "--device", device_id, "--kind", kind, "--since", "10m", "--json",
        "--limit", "1000",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.slow
def test_an_alert_brings_the_screen_around_it(
    server: ServerProcess, tmp_path: Path, desktop: Desktop
) -> None:
    identity = server.enroll(tmp_path / "pc")
    medium = tmp_path / "usb"
    medium.mkdir()
    agent = AgentProcess(tmp_path / "pc", collectors=("files", "screens"))
    agent.env.update(
        SEKIMORI_AGENT__COLLECTORS__FILES__REMOVABLE_PATHS=json.dumps([str(medium)]),
        SEKIMORI_AGENT__COLLECTORS__SCREENS__ENABLED="true",
        # No interval and no window-change frames: only a burst sends anything.
        SEKIMORI_AGENT__COLLECTORS__SCREENS__INTERVAL_SECONDS="0",
        SEKIMORI_AGENT__COLLECTORS__SCREENS__ON_WINDOW_CHANGE="false",
        SEKIMORI_AGENT__COLLECTORS__SCREENS__BURST_FRAMES="3",
        SEKIMORI_AGENT__COLLECTORS__SCREENS__DISPLAY=desktop.display,
        SEKIMORI_AGENT__COLLECTORS__SCREENS__XAUTHORITY=str(desktop.xauthority),
    )
    agent.start()
    try:
        device = identity.device_id
        wait_for(
            lambda: any(
                e["payload"]["collector"] == "screens" and e["payload"]["status"] == "running"
                for e in _events(server, device, "agent.collector_health")
            ),
            30,
            "the screens collector running",
            0.3,
        )
        desktop.xterm("customer list export")
        assert _events(server, device, "screen.frame") == [], "nothing before a rule fires"
        shutil.copy(Path(__file__), medium / "customers.py")
        frames = wait_for(
            lambda: len(_events(server, device, "screen.frame")) >= 1,
            30,
            "frames sent for the alert",
            0.5,
        )
        assert frames < 30
        sent = _events(server, device, "screen.frame")
        assert {e["payload"]["trigger"] for e in sent} == {"rule"}
        assert all(e["payload"]["image"] == "" for e in sent), "pictures are in the blob store"
    finally:
        assert agent.stop() == 0
