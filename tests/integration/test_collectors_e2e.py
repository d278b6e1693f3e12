"""Issue 3's "done when", end to end: a real agent process with its collectors, a real
server, and what a person does on the PC (open a terminal window, run a program, save a
file) showing up in `sekimori events` within seconds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.desktop import Desktop, desktop_fixture  # noqa: F401 - the fixture
from tests.processes import AgentProcess, ServerProcess, wait_for


def _events(server: ServerProcess, device_id: str, *kinds: str) -> list[dict[str, Any]]:
    args = ["events", "--device", device_id, "--since", "10m", "--limit", "5000", "--json"]
    for kind in kinds:
        args += ["--kind", kind]
    result = server.cli(*args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_what_a_person_does_is_recorded_within_seconds(
    server: ServerProcess, tmp_path: Path, desktop: Desktop
) -> None:
    identity = server.enroll(tmp_path / "pc")
    home = tmp_path / "home"
    home.mkdir()
    agent = AgentProcess(tmp_path / "pc", collectors=("files", "processes", "window", "inventory"))
    agent.env.update(
        SEKIMORI_AGENT__COLLECTORS__FILES__PATHS=json.dumps([str(home)]),
        SEKIMORI_AGENT__COLLECTORS__WINDOW__DISPLAY=desktop.display,
        SEKIMORI_AGENT__COLLECTORS__WINDOW__XAUTHORITY=str(desktop.xauthority),
        SEKIMORI_AGENT__COLLECTORS__PROCESSES__INTERVAL_SECONDS="0.5",
    )
    agent.start()
    try:
        device = identity.device_id
        wait_for(
            lambda: any(
                e["payload"]["collector"] == "window" and e["payload"]["status"] == "running"
                for e in _events(server, device, "agent.collector_health")
            ),
            30,
            "collectors running",
            0.3,
        )
        # A terminal window opened and focused.
        term = desktop.xterm("quarterly report draft")
        desktop.focus(term.window)
        # A program run.
        subprocess.run(["/bin/sleep", "1.25"], check=True)
        # A file saved.
        (home / "report.txt").write_text("numbers\n")

        def recorded() -> bool:
            kinds = {
                e["kind"]: e
                for e in _events(server, device, "window.focus", "process.started", "file.created")
                if (
                    e["kind"] != "window.focus"
                    or (e["payload"]["window"] or {}).get("title") == "quarterly report draft"
                )
                and (e["kind"] != "process.started" or "1.25" in e["payload"]["argv"])
                and (e["kind"] != "file.created" or e["payload"]["path"].endswith("report.txt"))
            }
            return {"window.focus", "process.started", "file.created"} <= set(kinds)

        took = wait_for(recorded, 30, "the terminal, the program and the file recorded", 0.5)
        assert took < 30
        assert _events(server, device, "inventory.hardware"), "inventory sent at start"
    finally:
        assert agent.stop() == 0
