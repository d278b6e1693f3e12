"""Remote actions in the console over HTTP, on a real server: who may see and use the
pages (by URL and by menu), the form's field errors, every target checked against the
user's scope, low-risk actions going at once, signatures checked against the keyring
(a passkey assertion made below the browser with tests/operators.py — the browser's
own passkeys are in test_browser_actions.py), and the library upload.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections.abc import Iterator

import pytest

from sekimori.clock import now_us
from sekimori.protocol.actions import SignedCommand, command_digest, merkle_proof
from sekimori.protocol.signing import verify_command
from sekimori.server import actions as service
from sekimori.server.blobs import blob_store_for
from sekimori.server.store import actions as store
from sekimori.server.store.audit import search_audit
from tests.console.conftest import ConsoleClient, as_user
from tests.console.seed import add_device
from tests.operators import Passkey
from tests.processes import ServerProcess

_NONCE_URL = re.compile(r"/actions/([0-9a-f]{32})$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Fleet:
    def __init__(self, server: ServerProcess) -> None:
        engine = server.engine()
        self.server = server
        self.sales = add_device(engine, "sales-pc-1", group="sales")
        self.sales2 = add_device(engine, "sales-pc-2", group="sales")
        self.hr = add_device(engine, "hr-pc-1", group="hr")
        # alice's and bob's passkeys, registered as the console would (the browser
        # registration itself is tested with Chromium).
        self.alice = Passkey("alice")
        self.bob = Passkey("bob")
        service.add_credential(engine, self.alice.key, b"alice-cred", by="alice")
        service.add_credential(engine, self.bob.key, b"bob-cred", by="bob")
        service.init_keyring(
            engine, [self.alice.key, self.bob.key], quorum=1, fleet_threshold=1, by="alice"
        )


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> Fleet:
    return Fleet(console_server)


@pytest.fixture
def alice(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    http = as_user(console_server, "alice")
    yield http
    http.close()


@pytest.fixture
def bob(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    http = as_user(console_server, "bob")
    yield http
    http.close()


@pytest.fixture
def erin(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    http = as_user(console_server, "erin")
    yield http
    http.close()


def _create(http: ConsoleClient, **fields: str) -> str:
    response = http.submit("/actions", {"lifetime": "600", **fields})
    assert response.status_code == 303, response.text
    found = _NONCE_URL.search(response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def _assertion(passkey: Passkey, credential: bytes, digest: bytes) -> dict[str, str]:
    sig = passkey.sign(digest)
    return {
        "credential_id": b64url(credential),
        "authenticator_data": b64url(sig.authenticator_data),
        "client_data_json": b64url(sig.client_data_json),
        "signature": b64url(sig.signature),
    }


@pytest.mark.parametrize("user", ["carol", "dave"])
def test_users_without_the_permission_get_403_and_no_menu_entry(
    console_server: ServerProcess, user: str
) -> None:
    with contextlib.closing(as_user(console_server, user)) as http:
        for url in ("/actions", "/actions/new", "/actions/library", "/operators"):
            assert http.get(url).status_code == 403, url
        assert http.submit("/actions", {"action": "message", "text": "x"}).status_code == 403
        menu = http.get("/").text
        assert 'href="/actions"' not in menu
        assert 'href="/operators"' not in menu


def test_operators_have_actions_but_not_the_keyring(
    fleet: Fleet, bob: ConsoleClient, alice: ConsoleClient
) -> None:
    home = bob.get("/").text
    assert 'href="/actions"' in home
    assert 'href="/operators"' not in home
    page = bob.get("/operators")
    assert page.status_code == 200
    assert 'id="my-passkeys"' in page.text
    assert 'id="keyring"' not in page.text  # keyring administration: administrators
    refused = bob.submit("/operators/proposals", {"quorum": "1", "fleet_threshold": "5"})
    assert refused.status_code == 403
    admin = alice.get("/operators").text
    assert 'href="/operators"' in admin
    fingerprint = service.current_fingerprint(fleet.server.engine())
    assert f"--operators SHA256:{fingerprint}" in admin


def test_the_form_shows_errors_per_field_and_stores_nothing(
    fleet: Fleet, alice: ConsoleClient
) -> None:
    before = len(service.list_commands(fleet.server.engine()))
    response = alice.submit(
        "/actions",
        {"action": "kill_process", "pid": "1", "process_name": "sleep", "devices": fleet.sales},
    )
    assert response.status_code == 400
    assert 'data-error-for="pid"' in response.text
    response = alice.submit(
        "/actions", {"action": "message", "text": "", "devices": "", "lifetime": "600"}
    )
    assert response.status_code == 400
    assert 'data-error-for="text"' in response.text
    assert 'data-error-for="devices"' in response.text
    response = alice.submit(
        "/actions", {"action": "run_script", "script": "0" * 64, "devices": fleet.sales}
    )
    assert response.status_code == 400
    assert 'data-error-for="script"' in response.text
    assert len(service.list_commands(fleet.server.engine())) == before


def test_an_operator_cannot_target_or_see_devices_outside_their_groups(
    fleet: Fleet, erin: ConsoleClient, alice: ConsoleClient
) -> None:
    engine = fleet.server.engine()
    before = len(service.list_commands(engine))
    for fields in (
        {"devices": fleet.sales},
        {"devices": "sales-pc-1"},
        {"devices": f"{fleet.hr} {fleet.sales}"},
        {"group": "sales"},
    ):
        response = erin.submit("/actions", {"action": "message", "text": "hi", **fields})
        assert response.status_code == 400, fields
        assert "not in your groups" in response.text or "not one of yours" in response.text
    assert len(service.list_commands(engine)) == before
    # alice's action on a sales PC: invisible to erin, by list and by URL.
    nonce = _create(alice, action="message", text="hello", devices=fleet.sales)
    assert nonce not in erin.get("/actions").text
    assert erin.get(f"/actions/{nonce}").status_code == 404
    assert erin.get(f"/actions/{nonce}/targets").status_code == 404
    signed = erin.submit(f"/actions/{nonce}/sign", {"credential_id": "x"})
    assert signed.status_code == 404


def test_a_low_risk_action_goes_at_once_without_a_signature(
    fleet: Fleet, bob: ConsoleClient
) -> None:
    nonce = _create(bob, action="message", text="Meeting at 3", title="IT", devices="sales-pc-1")
    view = service.command_view(fleet.server.engine(), nonce)
    assert view.state == "ready"
    assert view.needed_signers == 0
    assert view.requested_by == "bob"
    page = bob.get(f"/actions/{nonce}").text
    assert "Sign with passkey" not in page
    assert "Meeting at 3" in page


def test_a_passkey_signature_is_verified_and_the_agent_would_accept_the_command(
    fleet: Fleet, alice: ConsoleClient
) -> None:
    engine = fleet.server.engine()
    nonce = _create(
        alice,
        action="kill_process",
        pid="4242",
        process_name="sleep",
        signal="KILL",
        devices=fleet.sales,
        reason="runaway",
    )
    page = alice.get(f"/actions/{nonce}").text
    view = service.command_view(engine, nonce)
    assert view.state == "awaiting_signatures"
    assert view.digest.hex() in page  # the confirmation shows what is signed
    assert f'data-challenge="{b64url(view.digest)}"' in page
    assert f'data-credentials="{b64url(b"alice-cred")}"' in page
    answer = alice.submit(
        f"/actions/{nonce}/sign", _assertion(fleet.alice, b"alice-cred", view.digest)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["redirect"] == f"/actions/{nonce}"
    view = service.command_view(engine, nonce)
    assert view.state == "ready"
    assert view.signers == ["alice"]
    keyring = service.current_keyring(engine)
    assert keyring is not None
    body, operators = verify_command(
        SignedCommand(body=view.body_bytes, signatures=view.signatures),
        keyring=keyring[0],
        device_id=fleet.sales,
        proof=merkle_proof([fleet.sales], fleet.sales),
        now_us=now_us(),
    )
    assert operators == {"alice"}
    assert body.params.pid == 4242  # type: ignore[union-attr]


def test_refused_signatures_change_nothing(fleet: Fleet, alice: ConsoleClient) -> None:
    engine = fleet.server.engine()
    nonce = _create(alice, action="lock", devices=fleet.sales)
    other = _create(alice, action="lock", devices=fleet.sales2)
    other_digest = service.command_view(engine, other).digest
    # Signed over another command's digest.
    answer = alice.submit(
        f"/actions/{nonce}/sign", _assertion(fleet.alice, b"alice-cred", other_digest)
    )
    assert answer.status_code == 400
    assert "different challenge" in answer.json()["error"]
    # bob's passkey presented by alice: not one of her credentials.
    digest = service.command_view(engine, nonce).digest
    answer = alice.submit(f"/actions/{nonce}/sign", _assertion(fleet.bob, b"bob-cred", digest))
    assert answer.status_code == 400
    # Garbage.
    answer = alice.submit(f"/actions/{nonce}/sign", {"credential_id": "!!"})
    assert answer.status_code == 400
    view = service.command_view(engine, nonce)
    assert view.state == "awaiting_signatures"
    assert view.signatures == []


def test_a_fleet_action_waits_for_a_second_operator(
    fleet: Fleet, alice: ConsoleClient, bob: ConsoleClient
) -> None:
    engine = fleet.server.engine()
    # Two devices > fleet_threshold 1: two different operators must sign.
    nonce = _create(alice, action="lock", group="sales")
    digest = service.command_view(engine, nonce).digest
    first = alice.submit(f"/actions/{nonce}/sign", _assertion(fleet.alice, b"alice-cred", digest))
    assert first.json()["state"] == "awaiting_signatures"
    assert "signed-by-me" in alice.get(f"/actions/{nonce}").text
    listing = bob.get("/actions").text
    assert "waiting-notice" in listing
    assert nonce in listing
    second = bob.submit(f"/actions/{nonce}/sign", _assertion(fleet.bob, b"bob-cred", digest))
    assert second.json()["state"] == "ready", second.text
    assert sorted(service.command_view(engine, nonce).signers) == ["alice", "bob"]


def test_the_library_takes_scripts_and_packages_and_shows_their_digest(
    fleet: Fleet, alice: ConsoleClient
) -> None:
    script = b"#!/bin/sh\necho hello\n"
    response = alice.post(
        "/actions/library",
        data={"csrf_token": alice.csrf, "kind": "script", "name": "hello", "interpreter": "sh"},
        files={"file": ("hello.sh", script, "text/plain")},
    )
    assert response.status_code == 303, response.text
    digest = hashlib.sha256(script).hexdigest()
    assert digest in alice.get("/actions/library").text
    typed = alice.submit(
        "/actions/library",
        {"kind": "script", "name": "typed", "interpreter": "bash", "text": "echo typed\n"},
    )
    assert typed.status_code == 303
    refused = alice.post(
        "/actions/library",
        data={"csrf_token": alice.csrf, "kind": "package", "name": "tool"},
        files={"file": ("tool.tar", b"not a deb", "application/octet-stream")},
    )
    assert refused.status_code == 400
    assert ".deb" in refused.text
    nonce = _create(alice, action="run_script", script=digest, args="a\nb", devices=fleet.sales)
    params = service.command_view(fleet.server.engine(), nonce).body.params
    assert params.sha256 == digest  # type: ignore[union-attr]
    assert params.args == ["a", "b"]  # type: ignore[union-attr]
    assert command_digest(service.command_view(fleet.server.engine(), nonce).body_bytes)


def test_a_collected_file_downloads_as_an_attachment_and_is_audited(
    fleet: Fleet, alice: ConsoleClient, erin: ConsoleClient
) -> None:
    engine = fleet.server.engine()
    nonce = _create(alice, action="collect_file", path="/etc/hostname", devices=fleet.sales)
    data = b"sales-pc-1\n"
    ref = blob_store_for(fleet.server.data_dir).put(data)
    with engine.begin() as conn:
        assert store.claim_target(conn, nonce, fleet.sales, now_us())
        assert store.record_result(
            conn,
            nonce,
            fleet.sales,
            state="done",
            reason="",
            exit_code=None,
            output="",
            data_sha256=ref.sha256,
            data_size=len(data),
            now_us=now_us(),
        )
    page = alice.get(f"/actions/{nonce}/targets").text
    url = f"/actions/{nonce}/devices/{fleet.sales}/file"
    assert url in page
    assert 'data-finished="true"' in page  # polling stops
    response = alice.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-disposition"] == 'attachment; filename="hostname"'
    assert response.headers["cache-control"] == "no-store"
    entries = search_audit(engine, action="action.download", target=nonce).entries
    assert [e.actor for e in entries] == ["alice"]
    assert erin.get(url).status_code == 404  # another group's PC


def test_a_registration_needs_this_session_s_fresh_challenge_once(
    fleet: Fleet, bob: ConsoleClient
) -> None:
    engine = fleet.server.engine()
    before = service.credentials_of(engine, "bob")
    # Without options first: no challenge for this session.
    refused = bob.submit("/operators/passkeys", {"credential": "{}", "label": "x"})
    assert refused.status_code == 400
    assert "expired" in refused.json()["error"]
    options = bob.submit("/operators/passkeys/options")
    assert options.status_code == 200
    created = options.json()
    assert created["rp"]["id"] == "127.0.0.1"  # what the browser used
    assert 'id="passkey-unusable"' in bob.get("/operators").text  # an IP address
    assert created["authenticatorSelection"]["userVerification"] == "required"
    assert {p["alg"] for p in created["pubKeyCredParams"]} == {-8, -7, -257}
    assert created["excludeCredentials"] == [{"type": "public-key", "id": b64url(b"bob-cred")}]
    # A forged answer is refused, and the challenge is spent.
    forged = bob.submit("/operators/passkeys", {"credential": '{"id": "x"}', "label": "x"})
    assert forged.status_code == 400
    assert "refused" in forged.json()["error"]
    again = bob.submit("/operators/passkeys", {"credential": '{"id": "x"}', "label": "x"})
    assert "expired" in again.json()["error"]
    assert service.credentials_of(engine, "bob") == before


def test_the_pages_speak_japanese(fleet: Fleet, alice: ConsoleClient) -> None:
    headers = {"Accept-Language": "ja"}
    assert "新しい操作" in alice.get("/actions/new", headers=headers).text
    assert "あなたのパスキー" in alice.get("/operators", headers=headers).text
    assert "スクリプト・パッケージライブラリ" in alice.get("/actions/library", headers=headers).text


def test_the_enrollment_command_pins_the_operator_keyring(
    fleet: Fleet, alice: ConsoleClient
) -> None:
    page = alice.submit("/enrollment/tokens", {"group": "sales", "lifetime_hours": "1"})
    assert page.status_code == 200
    fingerprint = service.current_fingerprint(fleet.server.engine())
    assert f"--operators SHA256:{fingerprint}</pre>" in page.text
