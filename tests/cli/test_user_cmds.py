"""``sekimori user ...`` against a running server's store (SQLite and PostgreSQL):
the accounts it makes log in to the console, and its changes take effect at once and
are audited as ``cli:<os user>``."""

from __future__ import annotations

import getpass
import json
import re
from contextlib import closing
from pathlib import Path

from sekimori.server.store.audit import search_audit
from sekimori.server.store.users import get_user_by_name
from tests.console.conftest import ConsoleClient
from tests.processes import ServerProcess

_PASSWORD = re.compile(r"password \(shown only once\): (\S+)")
ACTOR = f"cli:{getpass.getuser()}"


def _console(server: ServerProcess) -> ConsoleClient:
    return ConsoleClient(base_url=f"http://127.0.0.1:{server.console_port}", timeout=30)


def _logs_in(server: ServerProcess, name: str, password: str) -> bool:
    with closing(_console(server)) as http:
        return http.login(name, password=password).status_code == 303


def test_add_prints_a_generated_password_once_and_audits(server: ServerProcess) -> None:
    done = server.cli("user", "add", "frank", "--role", "operator", "--group", "sales")
    assert done.returncode == 0, done.stderr
    assert "user 'frank' created: operator, device groups: sales" in done.stdout
    found = _PASSWORD.search(done.stdout)
    assert found
    assert _logs_in(server, "frank", found.group(1))
    frank = get_user_by_name(server.engine(), "frank")
    assert (frank.role, frank.all_groups, frank.groups) == ("operator", False, ("sales",))
    entry = search_audit(server.engine(), action="user.create", target="frank").entries[0]
    assert entry.actor == ACTOR
    assert entry.detail_dict() == {"role": "operator", "groups": ["sales"]}
    # Without --group: every group.
    assert server.cli("user", "add", "gina", "--role", "auditor").returncode == 0
    assert get_user_by_name(server.engine(), "gina").all_groups


def test_add_reads_the_password_from_a_file_never_the_command_line(
    server: ServerProcess, tmp_path: Path
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    done = server.cli("user", "add", "hana", "--role", "viewer", "--password-file", str(secret))
    assert done.returncode == 0, done.stderr
    assert "a long enough password" not in done.stdout and "shown only once" not in done.stdout
    assert _logs_in(server, "hana", "a long enough password")
    refused = server.cli("user", "add", "ivan", "--role", "viewer", "--password", "x" * 20)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    short = tmp_path / "short"
    short.write_text("short")
    too_short = server.cli("user", "add", "ivan", "--role", "viewer", "--password-file", str(short))
    assert too_short.returncode == 1 and "at least 12 characters" in too_short.stderr
    dup = server.cli("user", "add", "hana", "--role", "viewer")
    assert dup.returncode == 1 and "exists already" in dup.stderr
    bad_role = server.cli("user", "add", "ivan", "--role", "root")
    assert bad_role.returncode == 2


def test_list_shows_accounts_as_text_and_json(server: ServerProcess) -> None:
    assert server.cli("user", "add", "jun", "--role", "viewer", "--group", "hr").returncode == 0
    text = server.cli("user", "list")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ROLE", "GROUPS"]
    assert any(line.split()[:5] == ["jun", "viewer", "hr", "off", "active"] for line in lines)
    assert any(line.split()[:3] == ["admin", "administrator", "all"] for line in lines)
    rows = {r["name"]: r for r in json.loads(server.cli("user", "list", "--json").stdout)}
    assert rows["jun"]["groups"] == ["hr"] and rows["jun"]["disabled"] is False
    assert rows["admin"]["groups"] == "all" and rows["admin"]["totp"] is False


def test_passwd_prints_a_new_password_and_ends_sessions(server: ServerProcess) -> None:
    first = _PASSWORD.search(server.cli("user", "add", "kai", "--role", "viewer").stdout)
    assert first
    with closing(_console(server)) as kai:
        assert kai.login("kai", password=first.group(1)).status_code == 303
        assert kai.get("/").status_code == 200
        done = server.cli("user", "passwd", "kai")
        assert done.returncode == 0, done.stderr
        assert "1 session(s) ended" in done.stdout
        assert kai.get("/").status_code == 303  # logged out at once
    new = _PASSWORD.search(done.stdout)
    assert new and new.group(1) != first.group(1)
    assert not _logs_in(server, "kai", first.group(1))
    assert _logs_in(server, "kai", new.group(1))
    entry = search_audit(server.engine(), action="user.password_reset", target="kai").entries[0]
    assert entry.actor == ACTOR and entry.detail_dict() == {"sessions_ended": 1}
    missing = server.cli("user", "passwd", "nobody")
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr


def test_disable_ends_sessions_at_once_and_enable_restores(
    server: ServerProcess, tmp_path: Path
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("lena's password is long")
    server.cli("user", "add", "lena", "--role", "viewer", "--password-file", str(secret))
    with closing(_console(server)) as lena:
        assert lena.login("lena", password="lena's password is long").status_code == 303
        done = server.cli("user", "disable", "lena")
        assert done.returncode == 0, done.stderr
        assert "user 'lena' disabled; 1 session(s) ended" in done.stdout
        assert lena.get("/").status_code == 303
    assert not _logs_in(server, "lena", "lena's password is long")
    again = server.cli("user", "disable", "lena")
    assert "already disabled" in again.stdout
    assert server.cli("user", "enable", "lena").returncode == 0
    assert _logs_in(server, "lena", "lena's password is long")
    actions = [
        (e.action, e.detail_dict())
        for e in search_audit(server.engine(), actor=ACTOR, target="lena").entries
    ]
    assert actions[:2] == [
        ("user.enable", {"disabled": {"old": True, "new": False}, "sessions_ended": 0}),
        ("user.disable", {"disabled": {"old": False, "new": True}, "sessions_ended": 1}),
    ]
