"""`sekimori demo` (what `make run` calls), run for real: first run, Ctrl-C, second run."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from sekimori.protocol.policy import COLLECTOR_NAMES, RETENTION_DOMAINS
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
            # Filtered by kind: on a busy machine the newest page of the timeline can be
            # all process starts.
            def shown(kind: str) -> bool:
                page = browser.get(f"/devices/{device['id']}?tab=activity&kind={kind}")
                return f'data-kind="{kind}' in page.text

            return shown("agent.started") and shown("inventory.")

        wait_for(recorded, 30, "the agent's first events on the device page", 0.5)
        _copy_to_the_demo_medium_raises_one_alert(browser, output)
        _a_policy_saved_in_the_console_reaches_the_agent(browser, output)


# The alert list filtered to the rule: the dashboard shows only the 5 newest alerts.
_LEAK_ALERTS = "/alerts?rule=builtin.file_copied_to_removable"


def _demo_medium(output: str) -> Path:
    found = re.search(r"copy a file into (\S+) \(treated as a USB stick\)", output)
    assert found, output
    return Path(found.group(1))


def _alert_count(browser: ConsoleClient, page: str = "/") -> tuple[str, int] | None:
    """The data-leak alert on ``page`` (the dashboard's card by default): (its id, its
    count), or None."""
    card = browser.get(page).text
    row = re.search(
        r'<tr data-alert-id="(\d+)"[^>]*>.*?File copied to removable media.*?'
        r'<td class="num">(\d+)</td>',
        card,
        re.S,
    )
    return None if row is None else (row.group(1), int(row.group(2)))


def _copy_to_the_demo_medium_raises_one_alert(browser: ConsoleClient, output: str) -> None:
    """Issue 5's "done when": a file copied to a (test) removable mount raises one
    alert that shows on the dashboard."""
    medium = _demo_medium(output)
    (medium / "customers.csv").write_text("name,phone\n")
    wait_for(lambda: _alert_count(browser) is not None, 30, "the alert on the dashboard", 0.5)
    first = _alert_count(browser)
    assert first is not None and first[1] == 1
    (medium / "contracts.csv").write_text("id,amount\n")
    wait_for(
        lambda: _alert_count(browser, _LEAK_ALERTS) == (first[0], 2),
        30,
        "the same alert counting 2",
        0.5,
    )
    detail = browser.get(f"/alerts/{first[0]}").text
    assert "customers.csv" in detail and "contracts.csv" in detail


def _a_policy_saved_in_the_console_reaches_the_agent(browser: ConsoleClient, output: str) -> None:
    """Issue 5's "done when": saving a policy change in the console changes what the
    agent records within seconds — here, the file collector switched off: the next
    copy to the medium is not recorded, so the alert does not grow."""
    overview = browser.get("/policies").text
    group = re.search(r'<tr data-group-id="(\d+)" data-group="default">', overview)
    assert group, overview
    group_id = group.group(1)
    form = {
        "csrf_token": browser.csrf,
        **{f"collector_{n}": "on" for n in COLLECTOR_NAMES if n != "files"},
        "record_window_titles": "on",
        "wh_from": "09:00",
        "wh_to": "18:00",
        "wh_timezone": "UTC",
        "notice_text_ja": "",
        "notice_text_en": "",
        "excluded_applications": "",
        "excluded_domains": "",
        "advanced": "",
        "base_version": "0",
        **{f"retention_{d}": "" for d in RETENTION_DOMAINS},
    }
    preview = browser.post(f"/policies/{group_id}/preview", data=form)
    assert preview.status_code == 200, preview.text
    document = re.search(r'name="document" value="([^"]*)"', preview.text)
    assert document, preview.text
    saved = browser.post(
        f"/policies/{group_id}/save",
        data={
            "csrf_token": browser.csrf,
            "document": html.unescape(document.group(1)),
            "base_version": "0",
            "comment": "no file events",
        },
    )
    assert saved.status_code == 303, saved.text

    def applied() -> bool:
        page = browser.get("/policies").text
        row = re.search(r'data-group="default">(.*?)</tr>', page, re.S)
        return row is not None and "v1: 1" in row.group(1)

    took = wait_for(applied, 30, "the agent reporting policy version 1", 0.5)
    assert took < 30
    before = _alert_count(browser, _LEAK_ALERTS)
    (_demo_medium(output) / "payroll.csv").write_text("salary\n")
    time.sleep(3)  # what the agent would take to record it, with the collector on
    assert _alert_count(browser, _LEAK_ALERTS) == before


def _the_printed_signed_action_kills_a_process(
    output: str, data: Path, env: dict[str, str], device_id: str
) -> None:
    """Issue 7 in the demo: the hint's command, signed with the demo operator key the
    server never reads, makes the agent kill a real process."""
    hint = re.search(r"Try a signed action: sekimori (action create kill_process .*)", output)
    assert hint, output
    victim = subprocess.Popen(["sleep", "300"])
    try:
        fill = {"ID": device_id, "pid=PID": f"pid={victim.pid}", "name=NAME": "name=sleep"}
        args = [fill.get(a, a) for a in hint.group(1).split()]
        done = subprocess.run(
            [sys.executable, "-m", "sekimori", "--data-dir", str(data), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ready" in done.stdout, done.stdout
        assert victim.wait(30) == -signal.SIGTERM
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


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
        _the_printed_signed_action_kills_a_process(demo.output, data, env, str(device["id"]))
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
