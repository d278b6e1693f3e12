"""The rules pages against a real server: switching rules, editing and uploading lists,
custom YAML rules checked on save (errors name the line), Sigma import with the fields
Sekimori cannot see — administrators only, CSRF required, every change audited, and a
rule saved here fires at ingest."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.events import Payload
from sekimori.protocol.events.file import FileCopiedToRemovable
from sekimori.protocol.events.process import ProcessStarted
from sekimori.protocol.events.web import WebVisit
from sekimori.server.alerting.evaluator import IngestRules
from sekimori.server.console.rule_view import BUILTIN_TITLES
from sekimori.server.event_fields import event_fields
from sekimori.server.rules import load_builtin_rules
from sekimori.server.store.audit import AuditEntry, search_audit
from sekimori.server.store.events import EventRow, StoredBatch, write_batches
from sekimori.server.store.rule_config import load_rule_config, save_custom_rules
from sekimori.server.store.schema import alerts, rule_settings
from tests.console.conftest import ConsoleClient, as_user
from tests.console.seed import add_device
from tests.processes import ServerProcess

# A rule in the Sigma project's format (written for these tests): a curl download into
# /tmp, or a shell started by a web server. Sekimori's process events have no
# ParentImage, so the second selection can never be true; the first still fires.
SIGMA_CURL = """\
title: Suspicious Curl Download To Tmp Or Shell From Web Server
id: 5b1d3c8e-8f0a-4d57-9a63-0c2e7f4b9d11
status: experimental
description: Detects curl writing a file into /tmp, or a shell spawned by a web server.
references:
    - https://github.com/SigmaHQ/sigma-specification
author: Sekimori tests
date: 2025-01-20
tags:
    - attack.command_and_control
    - attack.t1105
logsource:
    category: process_creation
    product: linux
detection:
    selection_curl:
        Image|endswith: '/curl'
        CommandLine|contains|all:
            - ' -o '
            - '/tmp/'
    selection_webshell:
        ParentImage|endswith:
            - '/httpd'
            - '/nginx'
        Image|endswith:
            - '/sh'
            - '/bash'
    condition: 1 of selection_*
falsepositives:
    - Installers that download into /tmp
level: high
"""
SIGMA_RULE_ID = "sigma.5b1d3c8e-8f0a-4d57-9a63-0c2e7f4b9d11"

_json = msgspec.json.Encoder()


def _post(http: ConsoleClient, url: str, data: dict[str, str], **kwargs: object) -> httpx.Response:
    return http.post(url, data={"csrf_token": http.csrf, **data}, **kwargs)  # type: ignore[arg-type]


def _audit(server: ServerProcess, action: str, target: str) -> list[AuditEntry]:
    return search_audit(server.engine(), action=action, target=target).entries


def _row(page: str, rule_id: str) -> str:
    found = re.search(
        rf'<tr id="rule-[^"]*" data-rule-id="{re.escape(rule_id)}"(.*?)</tr>', page, re.S
    )
    assert found, f"{rule_id} not listed"
    return found.group(0)


def _stored_lists(server: ServerProcess) -> dict[str, tuple[str, ...]]:
    with server.engine().connect() as conn:
        return load_rule_config(conn).lists


@pytest.fixture
def alice(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with closing(as_user(console_server, "alice")) as http:
        yield http


# --- who may ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bob", "carol", "dave"])
def test_only_administrators_reach_the_rules_pages(
    console_server: ServerProcess, name: str
) -> None:
    with closing(as_user(console_server, name)) as http:
        assert 'href="/rules"' not in http.get("/").text
        for url in (
            "/rules",
            "/rules/lists",
            "/rules/lists/blocked_domains",
            "/rules/custom/new",
            "/rules/sigma/import",
        ):
            assert http.get(url).status_code == 403, url
        assert (
            _post(http, "/rules/builtin.software_installed/enabled", {"enabled": "off"}).status_code
            == 403
        )
        assert _post(http, "/rules/lists/banned_software", {"entries": "evil\n"}).status_code == 403
        created = _post(http, "/rules/custom/new", {"name": "sneaky", "source": "[]"})
        assert created.status_code == 403
        assert _post(http, "/rules/sigma/import", {"source": SIGMA_CURL}).status_code == 403
    with console_server.engine().connect() as conn:
        config = load_rule_config(conn)
    assert "builtin.software_installed" not in config.enabled
    assert "evil" not in config.lists.get("banned_software", ())
    assert not [c for c in config.custom if c.name == "sneaky"]


def test_the_menu_shows_rules_to_administrators(alice: ConsoleClient) -> None:
    assert 'href="/rules"' in alice.get("/").text


def test_rule_changes_need_the_csrf_token(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    url = "/rules/builtin.mass_file_deletion/enabled"
    assert alice.post(url, data={"enabled": "off"}).status_code == 403
    assert alice.post(url, data={"enabled": "off", "csrf_token": "x" * 43}).status_code == 403
    refused = alice.post(
        "/rules/lists/banned_software",
        data={"mode": "file"},
        files={"file": ("list.txt", b"evil\n", "text/plain")},
    )
    assert refused.status_code == 403
    with console_server.engine().connect() as conn:
        config = load_rule_config(conn)
    assert "builtin.mass_file_deletion" not in config.enabled
    assert "evil" not in config.lists.get("banned_software", ())


# --- the rule list ------------------------------------------------------------------


def test_every_builtin_title_is_in_the_catalog_table() -> None:
    from sekimori.server.alerting.state_rules import STATE_RULES

    pack = {r.id: r.title for r in load_builtin_rules()}
    pack.update({r.id: r.title for r in STATE_RULES})
    assert pack == BUILTIN_TITLES


def test_the_list_shows_every_rule_with_its_switch(alice: ConsoleClient) -> None:
    page = alice.get("/rules")
    assert page.status_code == 200
    for rule in load_builtin_rules():
        row = _row(page.text, rule.id)
        assert rule.title in row and 'data-origin="builtin"' in row
        assert f'action="/rules/{rule.id}/enabled"' in row
    assert 'data-enabled="on"' in _row(page.text, "builtin.usb_mass_storage_attached")
    # The device-state rules are listed with the pack, switched the same way.
    assert 'data-origin="state"' in _row(page.text, "builtin.agent_offline")
    assert "Agent older than the minimum version" in _row(page.text, "builtin.agent_outdated")


def test_builtin_titles_are_shown_in_japanese(alice: ConsoleClient) -> None:
    page = alice.get("/rules", headers={"Accept-Language": "ja"})
    row = _row(page.text, "builtin.file_copied_to_removable")
    assert "リムーバブルメディアへのファイルコピー" in row, row
    assert "オン" in row and "無効にする" in row
    assert "エージェントのオフライン" in _row(page.text, "builtin.agent_offline")


def test_a_builtin_rule_is_switched_off_and_on(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    rule_id = "builtin.usb_mass_storage_attached"
    off = _post(alice, f"/rules/{rule_id}/enabled", {"enabled": "off"})
    assert off.status_code == 303
    assert off.headers["location"].startswith(f"/rules?changed={rule_id}")
    with console_server.engine().connect() as conn:
        row = conn.execute(sa.select(rule_settings).where(rule_settings.c.rule_id == rule_id)).one()
    assert (row.enabled, row.updated_by) == (False, "alice")
    assert 'data-enabled="off"' in _row(alice.get("/rules").text, rule_id)
    entry = _audit(console_server, "rule.enable", rule_id)[0]
    assert entry.actor == "alice"
    assert entry.detail_dict() == {"enabled": False, "previous": True, "origin": "builtin"}

    assert _post(alice, f"/rules/{rule_id}/enabled", {"enabled": "on"}).status_code == 303
    with console_server.engine().connect() as conn:
        assert load_rule_config(conn).enabled[rule_id] is True
    assert 'data-enabled="on"' in _row(alice.get("/rules").text, rule_id)
    assert _audit(console_server, "rule.enable", rule_id)[0].detail_dict()["enabled"] is True


def test_a_state_rule_is_switched_like_the_pack(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    assert (
        _post(alice, "/rules/builtin.agent_offline/enabled", {"enabled": "off"}).status_code == 303
    )
    with console_server.engine().connect() as conn:
        assert load_rule_config(conn).enabled["builtin.agent_offline"] is False
    assert (
        _post(alice, "/rules/builtin.agent_offline/enabled", {"enabled": "on"}).status_code == 303
    )


def test_switching_an_unknown_rule_or_without_a_state_is_refused(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    assert _post(alice, "/rules/custom.nothing/enabled", {"enabled": "off"}).status_code == 404
    assert (
        _post(alice, "/rules/builtin.software_installed/enabled", {"enabled": "maybe"}).status_code
        == 400
    )
    with console_server.engine().connect() as conn:
        enabled = load_rule_config(conn).enabled
    assert "custom.nothing" not in enabled and "builtin.software_installed" not in enabled


# --- lists --------------------------------------------------------------------------


def test_the_builtin_lists_are_always_listed(alice: ConsoleClient) -> None:
    page = alice.get("/rules/lists")
    assert page.status_code == 200
    for name in ("blocked_domains", "banned_software", "blocked_addresses"):
        assert f'<tr data-list="{name}">' in page.text
    assert "builtin.blocked_domain_access" in page.text  # which rule uses it


def test_a_list_is_saved_from_the_textarea(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    text = "# gambling and file sharing\nCasino.example\n\nads.example.net.\ncasino.example\n"
    saved = _post(alice, "/rules/lists/blocked_domains", {"mode": "form", "entries": text})
    assert saved.status_code == 303, saved.text
    assert _stored_lists(console_server)["blocked_domains"] == ("casino.example", "ads.example.net")
    entry = _audit(console_server, "rule.list.save", "blocked_domains")[0]
    assert entry.detail_dict() == {
        "entries": 2,
        "added": 2,
        "removed": 0,
        "source": "form",
    }
    page = alice.get(saved.headers["location"])
    assert re.search(r'<dd id="list-count">2</dd>', page.text)
    assert "by alice" in page.text and 'id="list-saved"' in page.text
    assert "casino.example\nads.example.net" in page.text


def test_a_list_is_replaced_by_an_uploaded_file(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    content = "\ufeffteamviewer\r\nanydesk\r\n# remote tools\r\nウイルスバスター偽\r\n".encode()
    saved = _post(
        alice,
        "/rules/lists/banned_software",
        {"mode": "file"},
        files={"file": ("banned.txt", content, "text/plain")},
    )
    assert saved.status_code == 303, saved.text
    assert _stored_lists(console_server)["banned_software"] == (
        "teamviewer",
        "anydesk",
        "ウイルスバスター偽",
    )
    entry = _audit(console_server, "rule.list.save", "banned_software")[0]
    assert entry.detail_dict()["source"] == "file"
    assert entry.detail_dict()["filename"] == "banned.txt"
    assert entry.detail_dict()["entries"] == 3


def test_a_bad_address_is_refused_with_its_line(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    before = _stored_lists(console_server).get("blocked_addresses")
    audits = len(_audit(console_server, "rule.list.save", "blocked_addresses"))
    text = "203.0.113.7\n# office\n198.51.100.0/24\nnot-an-address\n"
    refused = _post(alice, "/rules/lists/blocked_addresses", {"mode": "form", "entries": text})
    assert refused.status_code == 400
    assert "Line 4: not-an-address is not an IP address or network" in refused.text
    assert "203.0.113.7\n# office\n198.51.100.0/24\nnot-an-address" in refused.text  # kept
    host_bits = _post(
        alice, "/rules/lists/blocked_addresses", {"mode": "form", "entries": "198.51.100.7/24"}
    )
    assert host_bits.status_code == 400
    assert "Line 1: 198.51.100.7/24 has host bits set" in host_bits.text
    assert "198.51.100.0/24" in host_bits.text
    assert _stored_lists(console_server).get("blocked_addresses") == before
    assert len(_audit(console_server, "rule.list.save", "blocked_addresses")) == audits
    good = _post(
        alice,
        "/rules/lists/blocked_addresses",
        {"mode": "form", "entries": "203.0.113.7\n2001:DB8::/32\n"},
    )
    assert good.status_code == 303
    assert _stored_lists(console_server)["blocked_addresses"] == ("203.0.113.7", "2001:db8::/32")


def test_a_bad_domain_or_file_is_refused_with_its_line(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    before = _stored_lists(console_server).get("blocked_domains")
    url = _post(
        alice,
        "/rules/lists/blocked_domains",
        {"mode": "form", "entries": "ok.example\nhttps://bad.example/x\n"},
    )
    assert url.status_code == 400 and "Line 2: https://bad.example/x is a URL" in url.text
    wildcard = _post(
        alice, "/rules/lists/blocked_domains", {"mode": "form", "entries": "*.bad.example"}
    )
    assert wildcard.status_code == 400 and "write bad.example instead" in wildcard.text
    shift_jis = "ok.example\n悪い.example\n".encode("shift_jis")
    not_utf8 = _post(
        alice,
        "/rules/lists/blocked_domains",
        {"mode": "file"},
        files={"file": ("domains.txt", shift_jis, "text/plain")},
    )
    assert not_utf8.status_code == 400
    assert "Line 2: the file is not UTF-8 text" in not_utf8.text
    too_big = _post(
        alice,
        "/rules/lists/blocked_domains",
        {"mode": "file"},
        files={"file": ("big.txt", b"a.example\n" * 419_431, "text/plain")},  # 4 MiB + 6 B
    )
    assert too_big.status_code == 400 and "larger than 4 MiB" in too_big.text
    # Far larger: refused from its declared length, before the body is read.
    huge = _post(
        alice,
        "/rules/lists/blocked_domains",
        {"mode": "file"},
        files={"file": ("huge.txt", b"a.example\n" * (1024 * 1024), "text/plain")},
    )
    assert huge.status_code == 413
    no_file = _post(alice, "/rules/lists/blocked_domains", {"mode": "file"})
    assert no_file.status_code == 400 and "Choose a file" in no_file.text
    assert _stored_lists(console_server).get("blocked_domains") == before


def test_a_new_list_is_created_by_name(alice: ConsoleClient) -> None:
    opened = alice.get("/rules/lists/new", params={"name": "gambling_sites"})
    assert opened.status_code == 303
    assert opened.headers["location"] == "/rules/lists/gambling_sites"
    assert alice.get("/rules/lists/gambling_sites").status_code == 200
    bad = alice.get("/rules/lists/new", params={"name": "Bad Name!"})
    assert bad.status_code == 400 and "A list name is 1 to 64" in bad.text
    assert alice.get("/rules/lists/Bad%20Name").status_code == 404


# --- custom YAML rules --------------------------------------------------------------

_BAD_RULE = """\
- id: custom.usb_on_sunday
  title: USB on a Sunday
  severity: low
  kinds: [device.usb_attached]
  colour: red
"""
_GOOD_RULE = """\
- id: custom.gambling
  title: Gambling site
  description: A visit to a listed gambling site.
  severity: low
  kinds: [web.visit]
  match:
    host: {domain_in: {list: gambling}}
"""


def _custom_names(server: ServerProcess) -> list[str]:
    with server.engine().connect() as conn:
        return [c.name for c in load_rule_config(conn).custom]


def test_a_custom_rule_with_an_error_is_refused_naming_the_line(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    refused = _post(alice, "/rules/custom/new", {"name": "weekend", "source": _BAD_RULE})
    assert refused.status_code == 400
    assert "Line 5, column 3: &#39;colour&#39; is not a rule key" in refused.text
    assert re.search(
        r'<li value="5" class="error-line" id="error-line" data-line="5">', refused.text
    )
    assert "colour: red" in refused.text  # the text typed is still in the editor
    broken_yaml = _post(
        alice, "/rules/custom/new", {"name": "weekend", "source": _BAD_RULE.replace("]", "")}
    )
    assert broken_yaml.status_code == 400 and "not valid YAML" in broken_yaml.text
    unknown_list = _post(
        alice,
        "/rules/custom/new",
        {"name": "weekend", "source": _GOOD_RULE.replace("gambling}", "nowhere}")},
    )
    assert unknown_list.status_code == 400
    assert "line 7" in unknown_list.text and "nowhere" in unknown_list.text
    assert 'data-line="7"' in unknown_list.text
    assert "weekend" not in _custom_names(console_server)
    assert _audit(console_server, "rule.custom.save", "weekend") == []


def test_a_valid_custom_rule_is_saved_listed_edited_and_deleted(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    _post(alice, "/rules/lists/gambling", {"mode": "form", "entries": "casino.example\n"})
    saved = _post(alice, "/rules/custom/new", {"name": "web-extra", "source": _GOOD_RULE})
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/rules/custom/web-extra?saved=1"
    row = _row(alice.get("/rules").text, "custom.gambling")
    assert 'data-origin="custom"' in row and "web-extra" in row and 'data-enabled="on"' in row
    entry = _audit(console_server, "rule.custom.save", "web-extra")[0]
    assert entry.detail_dict() == {"format": "yaml", "rules": ["custom.gambling"], "created": True}
    assert "custom.gambling" in alice.get("/rules/lists").text  # the list's user
    # The same name again is refused; an edit with an error stores nothing.
    again = _post(alice, "/rules/custom/new", {"name": "web-extra", "source": _GOOD_RULE})
    assert again.status_code == 400 and "stored under this name already" in again.text
    broken = _post(alice, "/rules/custom/web-extra", {"source": _GOOD_RULE + "  colour: red\n"})
    assert broken.status_code == 400 and 'data-line="8"' in broken.text
    with console_server.engine().connect() as conn:
        assert [c.source for c in load_rule_config(conn).custom if c.name == "web-extra"] == [
            _GOOD_RULE
        ]
    # Its own id again is no clash with itself; a built-in id is.
    edited = _post(
        alice, "/rules/custom/web-extra", {"source": _GOOD_RULE.replace("low", "medium")}
    )
    assert edited.status_code == 303
    clash = _post(
        alice,
        "/rules/custom/web-extra",
        {"source": _GOOD_RULE.replace("custom.gambling", "builtin.software_installed")},
    )
    assert clash.status_code == 400 and "already used by built-in" in clash.text
    state_clash = _post(
        alice,
        "/rules/custom/web-extra",
        {"source": _GOOD_RULE.replace("custom.gambling", "builtin.agent_offline")},
    )
    assert state_clash.status_code == 400 and "already used by built-in" in state_clash.text
    # Deleted: gone from the list, audited.
    gone = _post(alice, "/rules/custom/web-extra/delete", {})
    assert gone.status_code == 303
    assert "web-extra" not in _custom_names(console_server)
    assert 'data-rule-id="custom.gambling"' not in alice.get("/rules").text
    assert _audit(console_server, "rule.custom.delete", "web-extra")[0].actor == "alice"
    assert alice.get("/rules/custom/web-extra").status_code == 404


# --- Sigma ------------------------------------------------------------------------


def test_a_sigma_rule_is_imported_and_its_unsupported_fields_shown(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    imported = _post(alice, "/rules/sigma/import", {"mode": "form", "source": SIGMA_CURL})
    assert imported.status_code == 303, imported.text
    assert imported.headers["location"] == f"/rules/custom/{SIGMA_RULE_ID}?imported=1"
    page = alice.get(imported.headers["location"])
    assert 'id="sigma-imported"' in page.text
    unsupported = re.search(
        r'<section class="card" id="sigma-unsupported">(.*?)</section>', page.text, re.S
    )
    assert (
        unsupported and '<code class="unsupported-field">ParentImage</code>' in unsupported.group(1)
    )
    row = _row(alice.get("/rules").text, SIGMA_RULE_ID)
    assert 'data-origin="sigma"' in row and "Suspicious Curl Download" in row
    entry = _audit(console_server, "rule.sigma.import", SIGMA_RULE_ID)[0]
    assert entry.detail_dict() == {
        "rule_id": SIGMA_RULE_ID,
        "sigma_id": "5b1d3c8e-8f0a-4d57-9a63-0c2e7f4b9d11",
        "title": "Suspicious Curl Download To Tmp Or Shell From Web Server",
        "unsupported_fields": ["ParentImage"],
        "replaced": False,
    }
    # Uploading the same rule under another name: its id is taken already.
    again = _post(
        alice,
        "/rules/sigma/import",
        {"mode": "file", "name": "curl-copy"},
        files={"file": ("curl.yml", SIGMA_CURL.encode(), "application/x-yaml")},
    )
    assert again.status_code == 400 and "already used by" in again.text
    # Re-importing it under its own name replaces it.
    replaced = _post(
        alice,
        "/rules/sigma/import",
        {"mode": "file", "name": ""},
        files={"file": ("curl.yml", SIGMA_CURL.encode(), "application/x-yaml")},
    )
    assert replaced.status_code == 303
    assert _audit(console_server, "rule.sigma.import", SIGMA_RULE_ID)[0].detail_dict()["replaced"]


def test_a_sigma_rule_for_another_log_source_is_refused(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    dns = SIGMA_CURL.replace("category: process_creation", "category: dns_query").replace(
        "5b1d3c8e", "6c2e4d9f"
    )
    refused = _post(alice, "/rules/sigma/import", {"mode": "form", "source": dns})
    assert refused.status_code == 400
    assert "logsource category &#39;dns_query&#39; is not supported" in refused.text
    assert not any("6c2e4d9f" in name for name in _custom_names(console_server))
    garbage = _post(alice, "/rules/sigma/import", {"mode": "form", "source": "title: [unclosed"})
    assert garbage.status_code == 400 and "not a valid Sigma rule" in garbage.text


# --- end to end: saved in the console, fires at ingest ---------------------------------


def _batch(device_id: str, first_seq: int, items: Sequence[tuple[str, Payload]]) -> StoredBatch:
    t = now_us()
    rows: list[EventRow] = []
    for offset, (kind, payload) in enumerate(items):
        tag, subject = event_fields(payload)
        rows.append(
            (
                device_id,
                first_seq + offset,
                t + offset,
                t,
                kind,
                "alice",
                _json.encode(payload).decode(),
                tag,
                subject,
            )
        )
    return StoredBatch(device_id, first_seq + len(items) - 1, rows)


def _fired(engine: sa.Engine, device_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alerts.c.rule_id, alerts.c.count).where(alerts.c.device_id == device_id)
        )
        return {str(rule_id): int(count) for rule_id, count in rows}


def _visit(host: str) -> tuple[str, Payload]:
    return (
        "web.visit",
        WebVisit(url=f"https://{host}/", title="t", host=host, browser="chromium", profile="d"),
    )


def _process(exe: str, *argv: str) -> tuple[str, Payload]:
    return (
        "process.started",
        ProcessStarted(
            pid=4711,
            ppid=1,
            name=Path(exe).name,
            exe=exe,
            argv=[exe, *argv],
            user="alice",
            uid=1000,
            start_time_us=0,
            sha256="ab" * 32,
            hash_status="ok",
        ),
    )


def test_rules_saved_in_the_console_fire_at_ingest(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    engine = console_server.engine()
    device = add_device(engine, "pc-rules-e2e", group="sales")
    # A list and a custom rule that uses it, a Sigma import, a built-in rule off.
    assert (
        _post(
            alice, "/rules/lists/betting", {"mode": "form", "entries": "bet.example\n"}
        ).status_code
        == 303
    )
    source = _GOOD_RULE.replace("custom.gambling", "custom.betting").replace("gambling", "betting")
    assert (
        _post(alice, "/rules/custom/new", {"name": "betting", "source": source}).status_code == 303
    )
    assert (
        _post(alice, "/rules/sigma/import", {"mode": "form", "source": SIGMA_CURL}).status_code
        == 303
    )
    off = "builtin.file_copied_to_removable"
    assert _post(alice, f"/rules/{off}/enabled", {"enabled": "off"}).status_code == 303
    try:
        rules = IngestRules(poll_seconds=0)  # as a server replica: rules from the store
        copy = FileCopiedToRemovable(path="/media/usb/a.pdf", operation="created", size=1)
        items = [
            _visit("www.bet.example"),
            _visit("news.example"),
            _process("/usr/bin/curl", "-s", "-o", "/tmp/x.sh", "https://203.0.113.9/x.sh"),
            _process("/usr/bin/curl", "-s", "https://example.com/"),
            ("file.copied_to_removable", copy),
        ]
        with engine.begin() as conn:
            batch = _batch(device, 1, items)
            floors = write_batches(conn, [batch])
            rules.evaluate(conn, [batch], floors, now_us=now_us())
        assert _fired(engine, device) == {"custom.betting": 1, SIGMA_RULE_ID: 1}
        # Switched back on in the console: the next event raises it.
        assert _post(alice, f"/rules/{off}/enabled", {"enabled": "on"}).status_code == 303
        with engine.begin() as conn:
            batch = _batch(device, 6, [("file.copied_to_removable", copy)])
            floors = write_batches(conn, [batch])
            rules.evaluate(conn, [batch], floors, now_us=now_us())
        assert _fired(engine, device)[off] == 1
    finally:
        _post(alice, f"/rules/{off}/enabled", {"enabled": "on"})


def test_a_sigma_file_of_several_rules_is_refused_pointing_at_the_second(
    alice: ConsoleClient,
) -> None:
    second = SIGMA_CURL.replace("5b1d3c8e", "7d3f5e0a")
    refused = _post(
        alice, "/rules/sigma/import", {"mode": "form", "source": SIGMA_CURL + "---\n" + second}
    )
    assert refused.status_code == 400
    separator = SIGMA_CURL.count("\n") + 1
    assert f"The second begins with the --- on line {separator}." in refused.text
    assert f'data-line="{separator}"' in refused.text


# --- what no longer loads, and what a list change would break -------------------------


def test_a_stored_source_that_no_longer_loads_is_shown_with_the_reason(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    # As if a later version refused what an earlier one stored: written past the check.
    with console_server.engine().begin() as conn:
        save_custom_rules(conn, "legacy", "yaml", _BAD_RULE, actor="upgrade", now_us=now_us())
    try:
        page = alice.get("/rules")
        errors = re.search(
            r'<section class="card" id="rule-errors">(.*?)</section>', page.text, re.S
        )
        assert errors, page.text
        assert 'data-source="legacy"' in errors.group(1)
        assert "&#39;colour&#39; is not a rule key" in errors.group(1)
        assert 'href="/rules/custom/legacy"' in errors.group(1)
        assert 'data-rule-id="custom.usb_on_sunday"' not in page.text
        # Opened, it can be corrected (or deleted) like any other.
        assert alice.get("/rules/custom/legacy").status_code == 200
    finally:
        assert _post(alice, "/rules/custom/legacy/delete", {}).status_code == 303
    assert 'id="rule-errors"' not in alice.get("/rules").text


def test_a_list_change_that_would_break_a_rule_is_refused(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    assert (
        _post(
            alice, "/rules/lists/office_nets", {"mode": "form", "entries": "10.0.0.0/8"}
        ).status_code
        == 303
    )
    source = (
        "- id: custom.office_peer\n"
        "  title: Connection to an office network\n"
        "  severity: info\n"
        "  kinds: [network.connections]\n"
        "  match:\n"
        "    connections[*].remote_address: {cidr: {list: office_nets}}\n"
    )
    assert (
        _post(alice, "/rules/custom/new", {"name": "office", "source": source}).status_code == 303
    )
    try:
        refused = _post(
            alice, "/rules/lists/office_nets", {"mode": "form", "entries": "10.0.0.0/8\nhq-lan\n"}
        )
        assert refused.status_code == 400
        assert "Not saved: with this list" in refused.text
        assert "office_nets" in refused.text and "hq-lan" in refused.text
        assert _stored_lists(console_server)["office_nets"] == ("10.0.0.0/8",)
    finally:
        _post(alice, "/rules/custom/office/delete", {})
