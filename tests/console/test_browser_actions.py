"""Passkeys in a real Chromium with its virtual authenticator (Chrome DevTools Protocol
``WebAuthn.addVirtualAuthenticator``: CTAP2, internal transport, resident keys, user
verification) — the browser makes the key pair and signs; the server sees only public
keys and signatures.

WebAuthn needs a secure context and a relying-party id that is a domain: the pages are
opened at http://localhost:<port> (loopback HTTP counts as secure), so the rp id is
"localhost" and the pinned origin http://localhost:<port>.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, CDPSession, expect

from sekimori.clock import now_us
from sekimori.protocol.actions import SignedCommand, merkle_proof
from sekimori.protocol.signing import (
    decode_keyring,
    keyring_fingerprint,
    verify_command,
    verify_keyring_step,
)
from sekimori.server import actions as service
from sekimori.server.actions.passkeys import b64url
from sekimori.server.store import actions as store
from tests.console.browser import TIMEOUT_MS, Tab, login
from tests.console.seed import add_device
from tests.processes import ServerProcess

_ACTION_URL = re.compile(r"/actions/([0-9a-f]{32})$")


@dataclass
class PasskeyTab:
    tab: Tab
    cdp: CDPSession
    authenticator: str

    def credentials(self) -> list[dict[str, Any]]:
        found = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})
        return list(found["credentials"])


def passkey_tab(browser: Browser, server: ServerProcess) -> PasskeyTab:
    context = browser.new_context(
        base_url=f"http://localhost:{server.console_port}", locale="en-US"
    )
    context.set_default_timeout(TIMEOUT_MS)
    tab = Tab(page=context.new_page(), context=context)
    tab.page.on("console", tab._on_console)
    tab.page.on("pageerror", tab._on_page_error)
    cdp = context.new_cdp_session(tab.page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return PasskeyTab(tab, cdp, str(added["authenticatorId"]))


@pytest.fixture
def passkeys(chromium: Browser, console_server: ServerProcess) -> Iterator[dict[str, PasskeyTab]]:
    opened: dict[str, PasskeyTab] = {}
    try:
        yield opened
    finally:
        for p in opened.values():
            p.tab.context.close()
    for name, p in opened.items():
        assert not p.tab.errors, f"{name}'s page logged errors:\n" + "\n".join(p.tab.errors)


def register(p: PasskeyTab, user: str, label: str) -> None:
    page = p.tab.page
    login(page, user, next_="/operators")
    expect(page.locator("#passkey-unusable")).to_have_count(0)
    page.fill("#passkey-label", label)
    page.click("#passkey-register")
    page.wait_for_url(re.compile(r"/operators\?registered="))
    expect(page.locator("#my-passkeys tr[data-state=pending]")).to_have_count(1)
    assert len(p.credentials()) == 1  # the private key stays in the authenticator


def test_passkeys_register_make_the_keyring_sign_an_action_and_a_keyring_change(
    chromium: Browser, console_server: ServerProcess, passkeys: dict[str, PasskeyTab]
) -> None:
    engine = console_server.engine()
    origin = f"http://localhost:{console_server.console_port}"
    alice = passkeys["alice"] = passkey_tab(chromium, console_server)
    register(alice, "alice", "alice laptop")
    [credential] = service.credentials_of(engine, "alice")
    assert (credential.kind, credential.rp_id, credential.origins) == (
        "webauthn",
        "localhost",
        [origin],
    )

    # Keyring version 1 from the pending passkey.
    page = alice.tab.page
    page.check(f"#keyring-form input[name=key][value='{credential.key_id}']")
    page.fill("#keyring-form input[name=quorum]", "1")
    page.fill("#keyring-form input[name=fleet_threshold]", "10")
    page.click("#keyring-form button")
    fingerprint = service.current_fingerprint(engine)
    assert fingerprint is not None
    expect(page.locator("#operators-fingerprint")).to_have_text(f"--operators SHA256:{fingerprint}")
    expect(page.locator("#my-passkeys tr[data-state=active]")).to_have_count(1)

    # A kill_process action for one PC, signed with the passkey.
    device = add_device(engine, "sales-pc-1", group="sales")
    page.goto(f"/actions/new?device={device}")
    page.select_option("select[name=action]", "kill_process")
    page.fill("input[name=pid]", "4242")
    page.fill("input[name=process_name]", "sleep")
    page.fill("input[name=reason]", "runaway process")
    page.click("#action-submit")
    page.wait_for_url(_ACTION_URL)
    found = _ACTION_URL.search(page.url)
    assert found
    nonce = found.group(1)
    view = service.command_view(engine, nonce)
    expect(page.locator("#signed-digest")).to_have_text(view.digest.hex())
    expect(page.locator("#signed-devices")).to_have_text("1 device(s)")
    page.click("#sign-action")
    expect(page.locator("#signers")).to_have_text("alice")
    view = service.command_view(engine, nonce)
    assert view.state == "ready"
    [signature] = view.signatures
    assert signature.kind == "webauthn"
    assert signature.key_id == credential.key_id
    # What the agent on that PC checks, with the keyring it pinned.
    current = service.current_keyring(engine)
    assert current is not None
    assert keyring_fingerprint(current[1]) == fingerprint
    body, operators = verify_command(
        SignedCommand(body=view.body_bytes, signatures=view.signatures),
        keyring=current[0],
        device_id=device,
        proof=merkle_proof([device], device),
        now_us=now_us(),
    )
    assert operators == {"alice"}
    assert body.params.pid == 4242  # type: ignore[union-attr]

    # A signature over another command's digest is refused, and nothing is stored.
    other = service.create_command(
        engine,
        type(body.params)(pid=4343, name="sleep"),  # type: ignore[call-arg]
        [device],
        requested_by="alice",
    )
    page.goto(f"/actions/{other}")
    page.locator("#sign-action").evaluate(
        "(button, challenge) => { button.dataset.challenge = challenge; }",
        b64url(view.digest),
    )
    page.click("#sign-action")
    expect(page.locator("#sign-status")).to_have_attribute("data-state", "error")
    expect(page.locator("#sign-status")).to_contain_text("different challenge")
    assert service.command_view(engine, other).signatures == []

    # A second passkey (bob's) enters the keyring through a proposal alice signs.
    bob = passkeys["bob"] = passkey_tab(chromium, console_server)
    register(bob, "bob", "bob key")
    [bob_credential] = service.credentials_of(engine, "bob")
    page.goto("/operators")
    page.check(f"#propose-form input[name=add][value='{bob_credential.key_id}']")
    page.click("#propose-form button")
    proposal = page.locator("#proposals article").first
    expect(proposal).to_contain_text("Add bob’s key bob key")
    proposal.locator("button[data-sign]").click()
    expect(page.locator("#keyring-versions tr[data-version='2']")).to_have_count(1)
    expect(page.locator("#keyring-keys tbody tr")).to_have_count(2)
    with engine.connect() as conn:
        rows = store.keyring_rows(conn)
    first = decode_keyring(rows[0].body)
    step = verify_keyring_step(
        first,
        rows[0].body,
        service.keyring_chain(engine)[-1],
    )
    assert {k.operator for k in step.keys} == {"alice", "bob"}

    # bob, now a keyholder, signs the pending action from his own browser.
    bob_page = bob.tab.page
    bob_page.goto(f"/actions/{other}")
    bob_page.click("#sign-action")
    expect(bob_page.locator("#signers")).to_have_text("bob")
    assert service.command_view(engine, other).state == "ready"
