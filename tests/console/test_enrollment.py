"""Enrollment tokens from the console: the command shown enrolls a real agent, once;
tokens stay within the user's groups; every change is audited."""

from __future__ import annotations

import html
import re
import shlex
import socket
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from sekimori.agent.enroll import EnrollmentError, enroll
from sekimori.server.agent_command import agent_url, enroll_command
from sekimori.server.store.audit import search_audit
from sekimori.server.store.devices import get_device
from sekimori.settings import ServerSettings
from tests.console.conftest import ConsoleClient, as_user
from tests.processes import ServerProcess

COMMAND = re.compile(r'<pre class="command" id="enroll-command">([^<]+)</pre>')


@pytest.fixture(scope="module")
def alice(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with closing(as_user(console_server, "alice")) as http:
        yield http


@pytest.fixture(scope="module")
def bob(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with closing(as_user(console_server, "bob")) as http:
        yield http


def command_args(page: str) -> dict[str, str]:
    found = COMMAND.search(page)
    assert found, page
    words = shlex.split(html.unescape(found.group(1)))
    assert words[:3] == ["sekimori", "agent", "enroll"]
    return dict(zip(words[3::2], words[4::2], strict=True))


def test_a_token_from_the_console_enrolls_an_agent_once(
    console_server: ServerProcess, alice: ConsoleClient, tmp_path: Path
) -> None:
    page = alice.submit(
        "/enrollment/tokens", {"group": "", "new_group": "kiosks", "lifetime_hours": "1"}
    )
    assert page.status_code == 200
    args = command_args(page.text)
    assert args["--server"] == f"wss://{socket.getfqdn()}:{console_server.agent_port}"
    assert args["--ca-fingerprint"] == "SHA256:" + console_server.fingerprint
    token = args["--token"]
    # The agent dials the test server by its loopback name; token and CA pin are the
    # ones the page printed.
    identity = enroll(tmp_path / "a", console_server.url, token, args["--ca-fingerprint"])
    with console_server.engine().connect() as conn:
        device = get_device(conn, identity.device_id)
    assert device is not None and device.group == "kiosks"
    with pytest.raises(EnrollmentError, match="already used"):
        enroll(tmp_path / "b", console_server.url, token, args["--ca-fingerprint"])

    listing = alice.get("/enrollment").text
    assert token not in listing  # only its hash is stored
    assert f'href="/devices/{identity.device_id}"' in listing
    entry = search_audit(
        console_server.engine(), actor="alice", action="enrollment.token_create"
    ).entries[0]
    assert entry.detail_dict()["group"] == "kiosks"
    assert entry.detail_dict()["new_group"] is True


def test_a_group_limited_operator_makes_tokens_only_for_their_groups(
    console_server: ServerProcess, bob: ConsoleClient
) -> None:
    form = bob.get("/enrollment").text
    assert re.findall(
        r'<option value="([^"]+)">', form.split('name="group"')[1].split("</select>")[0]
    ) == ["sales"]
    assert 'name="new_group"' not in form
    for data in (
        {"group": "hr", "lifetime_hours": "24"},
        {"group": "sales", "new_group": "bobs-own", "lifetime_hours": "24"},
    ):
        refused = bob.submit("/enrollment/tokens", data)
        assert refused.status_code == 403
        assert not COMMAND.search(refused.text)
    assert (
        console_server.scalar(
            "SELECT count(*) FROM enrollment_tokens t JOIN groups g ON g.id = t.group_id "
            "WHERE g.name IN ('hr', 'bobs-own')"
        )
        == 0
    )
    made = bob.submit("/enrollment/tokens", {"group": "sales", "lifetime_hours": "24"})
    assert made.status_code == 200
    assert command_args(made.text)["--token"].startswith("sek_")
    # A lifetime not offered is refused.
    assert (
        bob.submit("/enrollment/tokens", {"group": "sales", "lifetime_hours": "100000"}).status_code
        == 400
    )


def test_tokens_are_listed_within_scope_and_revoked(
    console_server: ServerProcess, alice: ConsoleClient, bob: ConsoleClient
) -> None:
    hr_token = console_server.token(group="hr")
    with console_server.engine().connect() as conn:
        hr_id = int(
            conn.exec_driver_sql(
                "SELECT max(t.id) FROM enrollment_tokens t JOIN groups g ON g.id = t.group_id "
                "WHERE g.name = 'hr'"
            ).scalar_one()
        )
    assert f'data-token-id="{hr_id}"' not in bob.get("/enrollment").text
    assert bob.submit(f"/enrollment/tokens/{hr_id}/revoke").status_code == 404
    assert f'data-token-id="{hr_id}" data-state="valid"' in alice.get("/enrollment").text

    revoked = alice.submit(f"/enrollment/tokens/{hr_id}/revoke")
    assert revoked.status_code == 303
    assert f'data-token-id="{hr_id}" data-state="revoked"' in alice.get("/enrollment").text
    entry = search_audit(
        console_server.engine(), actor="alice", action="enrollment.token_revoke"
    ).entries[0]
    assert entry.target == str(hr_id)
    with pytest.raises(EnrollmentError, match="revoked"):
        enroll(
            console_server.data_dir.parent / "revoked-agent",
            console_server.url,
            hr_token,
            console_server.fingerprint,
        )
    # Revoking twice: nothing left to revoke.
    assert alice.submit(f"/enrollment/tokens/{hr_id}/revoke").status_code == 404


def test_revoked_devices_are_listed(
    console_server: ServerProcess, alice: ConsoleClient, tmp_path: Path
) -> None:
    identity = console_server.enroll(tmp_path / "agent", group="sales")
    assert alice.submit(f"/devices/{identity.device_id}/revoke").status_code == 303
    listed = alice.get("/enrollment").text
    revoked_table = listed.split('id="revoked-devices"')[1]
    assert f'data-device-id="{identity.device_id}"' in revoked_table


def test_viewers_and_auditors_cannot_enroll(console_server: ServerProcess) -> None:
    for name in ("dave", "carol"):
        with closing(as_user(console_server, name)) as http:
            assert 'href="/enrollment"' not in http.get("/").text
            assert http.get("/enrollment").status_code == 403
            made = http.submit("/enrollment/tokens", {"group": "sales", "lifetime_hours": "1"})
            assert made.status_code == 403


def test_the_command_helper_prefers_the_public_url() -> None:
    server = ServerSettings(agent_port=9443)
    assert agent_url(server) == f"wss://{socket.getfqdn()}:9443"
    public = ServerSettings(public_agent_url="wss://sekimori.example.jp:443")
    assert agent_url(public) == "wss://sekimori.example.jp:443"
    assert agent_url(public, "wss://override:1") == "wss://override:1"
    assert enroll_command("wss://h:1", "sek_abc", "ab" * 32) == (
        "sekimori agent enroll --server wss://h:1 --token sek_abc "
        f"--ca-fingerprint SHA256:{'ab' * 32}"
    )
