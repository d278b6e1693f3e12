"""`sekimori demo` (what `make run` calls), run for real: first run, Ctrl-C, second run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from tests.console.conftest import ConsoleClient
from tests.processes import free_port, wait_for


class Demo:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sekimori", "--data-dir", str(data_dir), "demo"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        code = self.proc.wait(60)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def _devices(data_dir: Path, env: dict[str, str]) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "sekimori", "--data-dir", str(data_dir), "device", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def _newcomer_finds_this_machine(output: str, device: dict[str, object]) -> None:
    """The issue's "done when": open the printed URL, log in with the printed password,
    find this machine and see what was done on it — with no documentation."""
    url = re.search(r"Open the console at (http://\S+/)", output)
    password = re.search(r"First administrator: admin / (\S+)", output)
    assert url and password, output
    with ConsoleClient(base_url=url.group(1), timeout=30) as browser:
        assert browser.login("admin", password.group(1)).status_code == 303
        listing = browser.get("/devices")
        assert f'data-device-id="{device["id"]}"' in listing.text
        assert str(device["hostname"]) in listing.text

        def recorded() -> bool:
            page = browser.get(f"/devices/{device['id']}?tab=activity")
            return 'data-kind="agent.started"' in page.text and 'data-kind="inventory.' in page.text

        wait_for(recorded, 30, "the agent's first events on the device page", 0.5)


def test_demo_runs_everything_and_reuses_its_data(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKIMORI_")}
    env["SEKIMORI_SERVER__AGENT_PORT"] = str(free_port())
    env["SEKIMORI_SERVER__CONSOLE_PORT"] = str(free_port())
    data = tmp_path / "var"

    demo = Demo(data, env)
    try:
        wait_for(lambda: "Running." in demo.output, 60, f"demo running: {demo.output}", 0.1)
        children = psutil.Process(demo.proc.pid).children()
        assert len(children) == 2, "a server and an agent"
        assert "First administrator: admin / " in demo.output
        assert "Enrolled this machine as device" in demo.output
        (device,) = _devices(data, env)
        assert device["status"] == "online"
        assert (data / "sekimori.db").exists() and (data / "pki" / "ca.crt").exists()
        _newcomer_finds_this_machine(demo.output, device)
    finally:
        code = demo.interrupt()
    assert code == 0, demo.output
    assert "Stopped." in demo.output
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "Ctrl-C stops the server and the agent too"

    again = Demo(data, env)
    try:
        wait_for(lambda: "Running." in again.output, 60, f"demo running: {again.output}", 0.1)
        assert "First administrator" not in again.output, "the password is shown only once"
        assert "Enrolled this machine" not in again.output, "the identity is reused"
        (same,) = _devices(data, env)
        assert same["id"] == device["id"]
        assert same["status"] == "online"
    finally:
        assert again.interrupt() == 0, again.output
