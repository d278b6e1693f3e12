"""The users page: administrators only; create, change, reset, disable — each audited
with old and new values, and no administrator can lock themselves out."""

from __future__ import annotations

import re
from contextlib import closing

import httpx
import pyotp
import pytest

from sekimori.server.store.audit import AuditEntry, search_audit
from sekimori.server.store.users import get_user_by_name, set_totp_secret
from tests.console.conftest import PASSWORD, ConsoleClient, as_user
from tests.processes import ServerProcess

_NEW_PASSWORD = re.compile(r'<code id="new-password">([^<]+)</code>')


def _post(http: ConsoleClient, url: str, data: dict[str, str | list[str]]) -> httpx.Response:
    return http.post(url, data={"csrf_token": http.csrf, **data})


def _last(server: ServerProcess, action: str, target: str) -> AuditEntry:
    entries = search_audit(server.engine(), action=action, target=target).entries
    assert entries, f"no {action} entry for {target}"
    return entries[0]


def _user_id(server: ServerProcess, name: str) -> int:
    return get_user_by_name(server.engine(), name).id


def _create(http: ConsoleClient, name: str, role: str, groups: list[str]) -> str:
    data: dict[str, str | list[str]] = {"username": name, "role": role}
    if groups:
        data["groups"] = groups
    else:
        data["all_groups"] = "on"
    response = _post(http, "/users", data)
    assert response.status_code == 200, response.text
    found = _NEW_PASSWORD.search(response.text)
    assert found, response.text
    return found.group(1)


def _login(server: ServerProcess, name: str, password: str) -> ConsoleClient:
    http = ConsoleClient(base_url=f"http://127.0.0.1:{server.console_port}", timeout=30)
    response = http.login(name, password=password)
    assert response.status_code == 303 and response.headers["location"] == "/", response.text
    return http


@pytest.mark.parametrize("name", ["bob", "carol", "dave"])
def test_only_administrators_reach_the_users_pages(
    console_server: ServerProcess, name: str
) -> None:
    alice_id = _user_id(console_server, "alice")
    with closing(as_user(console_server, name)) as http:
        assert 'href="/users"' not in http.get("/").text
        assert http.get("/users").status_code == 403
        assert http.get(f"/users/{alice_id}").status_code == 403
        refused = _post(http, "/users", {"username": "mallory", "role": "administrator"})
        assert refused.status_code == 403
        assert _post(http, f"/users/{alice_id}/disable", {}).status_code == 403
    assert "mallory" not in {e.target for e in search_audit(console_server.engine()).entries}
    assert not get_user_by_name(console_server.engine(), "alice").disabled


def test_the_list_shows_every_account(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "alice")) as http:
        assert 'href="/users"' in http.get("/").text
        page = http.get("/users")
    assert page.status_code == 200
    rows = dict(re.findall(r'<tr data-user="([^"]+)">(.*?)</tr>', page.text, re.S))
    assert {"alice", "bob", "carol", "dave", "erin"} <= set(rows)
    assert "Administrator" in rows["alice"] and ">all<" in rows["alice"]
    assert "Operator" in rows["bob"] and "sales" in rows["bob"]
    assert "Active" in rows["dave"]


def test_an_administrator_creates_a_group_limited_user(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "alice")) as http:
        password = _create(http, "frank", "operator", ["sales"])
    frank = get_user_by_name(console_server.engine(), "frank")
    assert (frank.role, frank.all_groups, frank.groups) == ("operator", False, ("sales",))
    entry = _last(console_server, "user.create", "frank")
    assert entry.actor == "alice"
    assert entry.detail_dict() == {"role": "operator", "groups": ["sales"]}
    with closing(_login(console_server, "frank", password)) as http:
        assert http.get("/devices").status_code != 403
        assert http.get("/users").status_code == 403


def test_bad_new_users_are_refused_with_a_reason(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "alice")) as http:
        taken = _post(http, "/users", {"username": "bob", "role": "viewer", "all_groups": "on"})
        assert taken.status_code == 400 and "exists already" in taken.text
        no_groups = _post(http, "/users", {"username": "gina", "role": "viewer"})
        assert no_groups.status_code == 400 and "Choose the device groups" in no_groups.text
        bad_role = _post(http, "/users", {"username": "gina", "role": "root", "all_groups": "on"})
        assert bad_role.status_code == 400
        bad_name = _post(http, "/users", {"username": "a b", "role": "viewer", "all_groups": "on"})
        assert bad_name.status_code == 400
        ghost = _post(http, "/users", {"username": "gina", "role": "viewer", "groups": "nope"})
        assert ghost.status_code == 400
        assert _NEW_PASSWORD.search(ghost.text) is None
    with pytest.raises(LookupError):
        get_user_by_name(console_server.engine(), "gina")


def test_role_and_groups_change_with_old_and_new_values(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "alice")) as http:
        _create(http, "hana", "operator", ["sales"])
        hana_id = _user_id(console_server, "hana")
        page = http.get(f"/users/{hana_id}")
        assert page.status_code == 200 and "hana" in page.text
        saved = _post(
            http, f"/users/{hana_id}/access", {"role": "auditor", "groups": ["hr", "sales"]}
        )
        assert saved.status_code == 200
        assert "Role and device groups saved." in saved.text
        entry = _last(console_server, "user.access", "hana")
        assert entry.detail_dict() == {
            "role": {"old": "operator", "new": "auditor"},
            "groups": {"old": ["sales"], "new": ["hr", "sales"]},
        }
        _post(http, f"/users/{hana_id}/access", {"role": "auditor", "all_groups": "on"})
        entry = _last(console_server, "user.access", "hana")
        assert entry.detail_dict() == {"groups": {"old": ["hr", "sales"], "new": "all"}}
    hana = get_user_by_name(console_server.engine(), "hana")
    assert (hana.role, hana.all_groups) == ("auditor", True)


def test_password_reset_ends_sessions_and_is_shown_once(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "alice")) as admin:
        first = _create(admin, "ivan", "viewer", [])
        ivan_id = _user_id(console_server, "ivan")
        with closing(_login(console_server, "ivan", first)) as ivan:
            assert ivan.get("/").status_code == 200
            reset = _post(admin, f"/users/{ivan_id}/password", {})
            assert reset.status_code == 200
            found = _NEW_PASSWORD.search(reset.text)
            assert found and found.group(1) != first
            # The old session is gone at once.
            assert ivan.get("/").status_code == 303
        assert admin.get(f"/users/{ivan_id}").text.count('id="new-password"') == 0
    entry = _last(console_server, "user.password_reset", "ivan")
    assert entry.actor == "alice" and entry.detail_dict() == {"sessions_ended": 1}
    refused = ConsoleClient(base_url=f"http://127.0.0.1:{console_server.console_port}")
    with refused:
        assert refused.login("ivan", password=first).status_code == 401
    _login(console_server, "ivan", found.group(1)).close()


def test_disabling_ends_sessions_and_enabling_restores_login(
    console_server: ServerProcess,
) -> None:
    with closing(as_user(console_server, "alice")) as admin:
        password = _create(admin, "jun", "viewer", [])
        jun_id = _user_id(console_server, "jun")
        with closing(_login(console_server, "jun", password)) as jun:
            done = _post(admin, f"/users/{jun_id}/disable", {})
            assert done.status_code == 200
            assert jun.get("/").status_code == 303
            assert jun.login("jun", password=password).status_code != 303
        listing = admin.get("/users").text
        assert re.search(r'<tr data-user="jun">.*?Disabled', listing, re.S)
        entry = _last(console_server, "user.disable", "jun")
        assert entry.detail_dict() == {"disabled": {"old": False, "new": True}, "sessions_ended": 1}
        assert _post(admin, f"/users/{jun_id}/enable", {}).status_code == 200
        assert _last(console_server, "user.enable", "jun").actor == "alice"
    _login(console_server, "jun", password).close()


def test_an_administrator_cannot_lock_themselves_out(console_server: ServerProcess) -> None:
    alice_id = _user_id(console_server, "alice")
    with closing(as_user(console_server, "alice")) as http:
        disabled = _post(http, f"/users/{alice_id}/disable", {})
        assert disabled.status_code == 400
        assert "You cannot disable your own account" in disabled.text
        demoted = _post(http, f"/users/{alice_id}/access", {"role": "viewer", "all_groups": "on"})
        assert demoted.status_code == 400
        assert "You cannot take the administrator role" in demoted.text
        assert http.get("/users").status_code == 200
    alice = get_user_by_name(console_server.engine(), "alice")
    assert (alice.role, alice.disabled) == ("administrator", False)
    # Another administrator may do it (and undo it).
    with closing(as_user(console_server, "alice")) as http:
        _create(http, "kai", "administrator", [])
        kai_id = _user_id(console_server, "kai")
        assert _post(http, f"/users/{kai_id}/disable", {}).status_code == 200


def test_a_lost_authenticator_is_reset_by_an_administrator(
    console_server: ServerProcess,
) -> None:
    with closing(as_user(console_server, "alice")) as admin:
        password = _create(admin, "lena", "viewer", [])
        lena_id = _user_id(console_server, "lena")
        set_totp_secret(console_server.engine(), lena_id, pyotp.random_base32())
        with ConsoleClient(base_url=f"http://127.0.0.1:{console_server.console_port}") as lena:
            assert (
                lena.login("lena", password=password).headers["location"].startswith("/login/totp")
            )
        page = admin.get(f"/users/{lena_id}")
        assert "/totp/reset" in page.text
        assert _post(admin, f"/users/{lena_id}/totp/reset", {}).status_code == 200
    assert not get_user_by_name(console_server.engine(), "lena").totp_enabled
    entry = _last(console_server, "user.totp_reset", "lena")
    assert entry.detail_dict() == {"totp": {"old": "on", "new": "off"}}
    _login(console_server, "lena", password).close()


def test_user_changes_need_the_csrf_token(console_server: ServerProcess) -> None:
    dave_id = _user_id(console_server, "dave")
    with closing(as_user(console_server, "alice")) as http:
        assert http.post(f"/users/{dave_id}/disable").status_code == 403
        assert http.get("/users/999999").status_code == 404
    assert not get_user_by_name(console_server.engine(), "dave").disabled
    assert PASSWORD  # dave still logs in with the fixture password
    as_user(console_server, "dave").close()


def test_the_users_page_in_japanese(console_server: ServerProcess) -> None:
    with closing(as_user(console_server, "alice")) as http:
        page = http.get("/users", headers={"Accept-Language": "ja"})
    assert "ユーザーの追加" in page.text
    assert "最終ログイン" in page.text
