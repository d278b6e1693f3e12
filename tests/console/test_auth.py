"""Login, sessions, CSRF, lockout and TOTP at the HTTP level, against a real server."""

from __future__ import annotations

import time

import pyotp
import pytest

from sekimori.server.console.auth import safe_next, verify_totp
from sekimori.server.store.audit import search_audit, verify_chain
from sekimori.server.store.users import LOCKOUT_FAILURES, create_user
from tests.console.conftest import PASSWORD, ConsoleClient, as_user
from tests.processes import ServerProcess


def test_pages_need_a_login(client: ConsoleClient) -> None:
    response = client.get("/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Faccount"
    htmx = client.get("/account", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["HX-Redirect"].startswith("/login")


def test_login_sets_a_strict_httponly_cookie_and_is_audited(
    console_server: ServerProcess, client: ConsoleClient
) -> None:
    response = client.login("alice", next_="/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "sekimori_session=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    # Plain HTTP on loopback: a Secure cookie would never come back, so none is set.
    assert "Secure" not in cookie
    assert client.get("/account").status_code == 200
    entries = search_audit(console_server.engine(), actor="alice", action="login").entries
    assert entries and entries[0].client_ip == "127.0.0.1"


def test_wrong_password_is_refused_and_audited(
    console_server: ServerProcess, client: ConsoleClient
) -> None:
    response = client.login("carol", password="not the password at all")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.text
    assert client.get("/account").status_code == 303
    failed = search_audit(console_server.engine(), actor="carol", action="login.failed").entries
    assert failed and failed[0].detail_dict() == {"reason": "bad_credentials"}


def test_unknown_user_gets_the_same_answer(client: ConsoleClient) -> None:
    response = client.login("nobody-here", password="whatever whatever")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.text


def test_login_form_needs_its_csrf_cookie(client: ConsoleClient) -> None:
    client.get("/login")
    client.cookies.clear()
    response = client.post(
        "/login", data={"login_csrf": "forged", "username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 403


def test_open_redirects_after_login_are_refused(client: ConsoleClient) -> None:
    response = client.login("alice", next_="https://evil.example/")
    assert response.headers["location"] == "/"
    for target in ("//evil.example", "/\\evil.example", "http:/x", "javascript:alert(1)"):
        assert safe_next(target) == "/"
    assert safe_next("/devices?q=a") == "/devices?q=a"


def test_state_changes_need_the_csrf_token(client: ConsoleClient) -> None:
    client.login("alice")
    assert client.post("/account/locale", data={"locale": "ja"}).status_code == 403
    wrong = client.post("/account/locale", data={"locale": "ja", "csrf_token": "x" * 43})
    assert wrong.status_code == 403
    header = client.post(
        "/account/locale", data={"locale": "en"}, headers={"X-CSRF-Token": client.csrf}
    )
    assert header.status_code == 303
    assert client.submit("/account/locale", {"locale": "en"}).status_code == 303


def test_cross_site_posts_are_refused_even_with_the_token(client: ConsoleClient) -> None:
    client.login("alice")
    response = client.post(
        "/account/locale",
        data={"locale": "ja", "csrf_token": client.csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    fetch = client.post(
        "/account/locale",
        data={"locale": "ja", "csrf_token": client.csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert fetch.status_code == 403


def test_logout_ends_the_session_on_the_server(client: ConsoleClient) -> None:
    client.login("alice")
    stolen = client.cookies.get("sekimori_session")
    assert client.submit("/logout").status_code == 303
    client.cookies.set("sekimori_session", stolen or "")
    assert client.get("/account").status_code == 303


def test_security_headers(client: ConsoleClient) -> None:
    response = client.get("/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_account_locks_after_repeated_failures(console_server: ServerProcess) -> None:
    create_user(console_server.engine(), "frank", PASSWORD, "viewer")
    with ConsoleClient(base_url=f"http://127.0.0.1:{console_server.console_port}") as http:
        for _ in range(LOCKOUT_FAILURES):
            http.login("frank", password="wrong password!!")
        # Now even the right password is refused until the lock expires.
        response = http.login("frank")
        assert response.status_code == 401
        assert "locked" in response.text
    actions = [e.action for e in search_audit(console_server.engine(), actor="frank").entries]
    assert actions.count("login.failed") == LOCKOUT_FAILURES + 1


def test_totp_enrolment_and_login(console_server: ServerProcess) -> None:
    create_user(console_server.engine(), "grace", PASSWORD, "viewer")
    http = as_user(console_server, "grace")
    page = http.get("/account")
    assert "<svg" in page.text  # the QR code, inline
    secret = page.text.split('name="totp_secret" value="', 1)[1].split('"', 1)[0]
    assert (
        http.submit("/account/totp", {"totp_secret": secret, "code": "000000"}).status_code == 400
    )
    code = pyotp.TOTP(secret).now()
    enabled = http.submit("/account/totp", {"totp_secret": secret, "code": code})
    assert enabled.status_code == 200
    assert "Two-factor authentication is on" in enabled.text
    http.submit("/logout")

    # Password alone now leads only to the code prompt; pages stay closed.
    response = http.login("grace")
    assert response.headers["location"].startswith("/login/totp")
    assert http.get("/account").status_code == 303
    prompt = http.get(response.headers["location"])
    csrf = prompt.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    # The code used for enrolment cannot be replayed.
    replay = http.post("/login/totp", data={"csrf_token": csrf, "code": code})
    assert replay.status_code == 401
    step = int(time.time() // 30) + 1
    fresh = pyotp.TOTP(secret).generate_otp(step)
    done = http.post("/login/totp", data={"csrf_token": csrf, "code": fresh})
    assert done.status_code == 303
    assert http.get("/account").status_code == 200
    http.close()


@pytest.mark.parametrize("code", ["", "12345", "abcdef", "1234567"])
def test_malformed_totp_codes_are_refused(code: str) -> None:
    assert verify_totp(pyotp.random_base32(), code, None) is None


def test_the_audit_chain_of_a_busy_server_verifies(console_server: ServerProcess) -> None:
    report = verify_chain(console_server.engine())
    assert report.entries > 0
    assert report.intact, report.problems
