"""End to end, nothing mocked: an operator clicks in a real Chromium, signs with a
passkey of its virtual authenticator, and a real agent process — enrolled with the
keyring's fingerprint pinned — verifies the command and kills a real ``sleep``."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from sekimori.agent.enroll import enroll
from sekimori.server import actions as service
from tests.console.test_browser_actions import PasskeyTab, passkey_tab, passkeys, register
from tests.processes import AgentProcess, ServerProcess, wait_for

__all__ = ["passkeys"]  # the fixture, imported for this module's tests

_ACTION_URL = re.compile(r"/actions/([0-9a-f]{32})$")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_click_and_a_passkey_signature_make_a_real_agent_kill_a_real_process(
    chromium: Browser,
    console_server: ServerProcess,
    passkeys: dict[str, PasskeyTab],
    sleeper: subprocess.Popen[bytes],
) -> None:
    engine = console_server.engine()
    alice = passkeys["alice"] = passkey_tab(chromium, console_server)
    register(alice, "alice", "alice laptop")
    page = alice.tab.page
    page.check("#keyring-form input[name=key]")
    page.click("#keyring-form button")
    fingerprint = service.current_fingerprint(engine)
    assert fingerprint is not None
    expect(page.locator("#operators-fingerprint")).to_contain_text(fingerprint)

    with tempfile.TemporaryDirectory(prefix="actions-e2e-") as tmp:
        state = Path(tmp) / "pc"
        # In a thread: enrollment runs its own event loop, and Playwright's runs here.
        with ThreadPoolExecutor(1) as pool:
            identity = pool.submit(
                lambda: enroll(
                    state,
                    console_server.url,
                    console_server.token("default"),
                    console_server.fingerprint,
                    operators=f"SHA256:{fingerprint}",
                )
            ).result()
        agent = AgentProcess(state).start()
        try:
            wait_for(
                lambda: (
                    console_server.scalar(
                        "SELECT COUNT(*) FROM devices WHERE id = :d AND connected",
                        d=identity.device_id,
                    )
                    == 1
                ),
                20,
                "the agent connected",
                0.1,
            )
            page.goto(f"/devices/{identity.device_id}")
            page.click("#device-actions")
            page.select_option("select[name=action]", "kill_process")
            page.fill("input[name=pid]", str(sleeper.pid))
            page.fill("input[name=process_name]", "sleep")
            page.click("#action-submit")
            page.wait_for_url(_ACTION_URL)
            page.click("#sign-action")
            # The results region polls until the PC has answered.
            target = page.locator(f"#targets tr[data-device-id='{identity.device_id}']")
            expect(target).to_have_attribute("data-state", "done", timeout=20_000)
            expect(page.locator("#action-targets")).to_have_attribute("data-finished", "true")
            assert sleeper.wait(10) == -15  # SIGTERM
            # The PC's own log: received (before any check), then done, naming the
            # operator whose passkey signed.
            found = _ACTION_URL.search(page.url)
            assert found
            steps = [
                json.loads(line)
                for line in (state / "actions.log").read_text().splitlines()
                if json.loads(line)["nonce"] == found.group(1)
            ]
            assert [(e["step"], e["signers"]) for e in steps] == [
                ("received", []),
                ("done", ["alice"]),
            ]
        finally:
            agent.stop()
