"""The policy editor over HTTP against a real server: administrators edit a group's
policy through the form, see what changes before saving, and save a new version
(audited once); bad values are refused next to their field with nothing saved; a
save on top of a version saved meanwhile is refused; other roles are kept out."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest
from markupsafe import escape

from sekimori.clock import now_us
from sekimori.protocol.policy import COLLECTOR_NAMES, RETENTION_DOMAINS, Policy
from sekimori.server.policies import validate_policy
from sekimori.server.store.audit import search_audit
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.policies import current_policy, record_applied, save_policy
from sekimori.server.store.users import create_user
from tests.console.conftest import PASSWORD, ConsoleClient, as_user
from tests.console.seed import add_device
from tests.processes import ServerProcess

Form = dict[str, str | list[str]]

_DOCUMENT = re.compile(r'name="document" value="([^"]*)"')
_BASE = re.compile(
    r'<form method="post" action="/policies/\d+/save" id="confirm">.*?'
    r'name="base_version" value="(\d+)"',
    re.S,
)


@pytest.fixture(scope="module")
def bad_group(console_server: ServerProcess) -> int:
    return _new_group(console_server, "pol-bad")[0]


@pytest.fixture(scope="module")
def alice(console_server: ServerProcess) -> Iterator[ConsoleClient]:
    with closing(as_user(console_server, "alice")) as http:
        yield http


def _new_group(server: ServerProcess, name: str, hosts: int = 0) -> tuple[int, list[str]]:
    """A device group (made as enrollment makes one) with ``hosts`` devices."""
    with server.engine().begin() as conn:
        group_id = ensure_group(conn, name)
    devices = [add_device(server.engine(), f"{name}-pc{i}", group=name) for i in range(hosts)]
    return group_id, devices


def _post(http: ConsoleClient, url: str, data: Form) -> httpx.Response:
    return http.post(url, data={"csrf_token": http.csrf, **data})


def _form(**changes: str | list[str] | None) -> Form:
    """The editor's fields for the default policy, with ``changes`` (None: leave the
    field out, as a browser does for an unticked checkbox)."""
    defaults = Policy().collectors  # every collector on but screens
    data: dict[str, str | list[str] | None] = {
        f"collector_{n}": "on" for n in COLLECTOR_NAMES if getattr(defaults, n).enabled
    }
    data.update(
        record_window_titles="on",
        wh_days=["mon", "tue", "wed", "thu", "fri"],
        wh_from="09:00",
        wh_to="18:00",
        wh_timezone="Asia/Tokyo",
        notice_text_ja="",
        notice_text_en="",
        excluded_applications="",
        excluded_domains="",
        advanced="",
        base_version="0",
        **{f"retention_{d}": "" for d in RETENTION_DOMAINS},
    )
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def _confirm_fields(page: str) -> tuple[str, str]:
    document, base = _DOCUMENT.search(page), _BASE.search(page)
    assert document and base, page
    return html.unescape(document.group(1)), base.group(1)


def _rows(page: str, table: str = "changes") -> dict[str, tuple[str, str]]:
    found = re.search(rf'<table class="changes" id="{table}">(.*?)</table>', page, re.S)
    assert found, page
    return {
        path: (html.unescape(old), html.unescape(new))
        for path, old, new in re.findall(
            r'<tr data-path="([^"]+)"><td>[^<]*</td><td class="old">([^<]*)</td>'
            r'<td class="new">([^<]*)</td></tr>',
            found.group(1),
        )
    }


def _saves(server: ServerProcess, group_id: int) -> list[int]:
    entries = search_audit(server.engine(), action="policy.save", target=f"group:{group_id}")
    return sorted(int(e.detail_dict()["version"]) for e in entries.entries)


def test_an_administrator_previews_then_saves_a_new_version(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    group_id, _ = _new_group(console_server, "pol-edit", hosts=1)
    editor = alice.get(f"/policies/{group_id}")
    assert editor.status_code == 200
    assert 'name="collector_web" checked' in editor.text
    assert "No policy yet" in editor.text

    changed = _form(
        collector_web=None,
        record_window_titles=None,
        retention_web="30",
        excluded_domains="bank.example\n\nintranet.example.co.jp\n",
    )
    preview = _post(alice, f"/policies/{group_id}/preview", changed)
    assert preview.status_code == 200, preview.text
    rows = _rows(preview.text)
    assert rows == {
        "collectors.web.enabled": ("On", "Off"),
        "excluded_domains": ("(none)", "bank.example, intranet.example.co.jp"),
        "privacy.record_window_titles": ("On", "Off"),
        "retention_days.web": ("no limit", "30 days"),
    }
    assert "Web browsing: collected" in preview.text
    assert "Save as version 1" in preview.text
    # A preview saves nothing.
    assert current_policy(console_server.engine(), group_id) is None

    document, base = _confirm_fields(preview.text)
    saved = _post(
        alice,
        f"/policies/{group_id}/save",
        {"document": document, "base_version": base, "comment": "No web history for HR"},
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/policies/{group_id}?saved=1"
    notice = alice.get(saved.headers["location"])
    assert 'id="saved"' in notice.text and "Version 1 saved." in notice.text
    assert "Current version: v1" in notice.text
    assert 'id="saved"' not in alice.get(f"/policies/{group_id}?saved=2").text
    assert 'name="collector_web" checked' not in notice.text
    assert 'name="collector_files" checked' in notice.text

    stored = current_policy(console_server.engine(), group_id)
    assert stored is not None and stored.version == 1
    assert stored.created_by == "alice" and stored.comment == "No web history for HR"
    assert stored.policy == validate_policy(
        {
            "collectors": {"web": {"enabled": False}},
            "privacy": {"record_window_titles": False},
            "excluded_domains": ["bank.example", "intranet.example.co.jp"],
            "retention_days": {"web": 30},
        }
    )
    # Audited once, by the store, with the diff.
    entries = search_audit(
        console_server.engine(), action="policy.save", target=f"group:{group_id}"
    ).entries
    assert len(entries) == 1
    assert entries[0].actor == "alice" and entries[0].client_ip == "127.0.0.1"
    assert {c["path"] for c in entries[0].detail_dict()["changes"]} == set(rows)


def test_the_second_version_is_diffed_against_the_first(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    group_id, _ = _new_group(console_server, "pol-second")
    first = validate_policy({"retention_days": {"web": 30}, "excluded_applications": ["keepass"]})
    save_policy(console_server.engine(), group_id, first, "alice", now_us=now_us())
    editor = alice.get(f"/policies/{group_id}").text
    assert 'name="retention_web" value="30"' in editor
    assert ">keepass</textarea>" in editor
    assert 'name="base_version" value="1"' in editor

    same = _form(retention_web="30", excluded_applications="keepass", base_version="1")
    unchanged = _post(alice, f"/policies/{group_id}/preview", same)
    assert 'id="changes">Nothing changes.' in unchanged.text
    assert 'id="confirm"' not in unchanged.text  # nothing to save

    changed = _post(
        alice,
        f"/policies/{group_id}/preview",
        {**same, "retention_web": "90", "working_hours": "on", "wh_days": ["mon", "fri"]},
    )
    rows = _rows(changed.text)
    assert rows["retention_days.web"] == ("30 days", "90 days")
    assert rows["privacy.working_hours_only"] == ("Off", "On")
    assert rows["privacy.working_hours_only.days"] == ("—", "Mon Fri")
    assert rows["privacy.working_hours_only.timezone"] == ("—", "Asia/Tokyo")
    assert "Save as version 2" in changed.text


@pytest.mark.parametrize(
    ("changes", "field", "path", "message"),
    [
        ({"retention_web": "thirty"}, "retention_web", "retention_days.web", "expected int"),
        ({"retention_file": "0"}, "retention_file", "retention_days.file", "at least 1"),
        (
            {"working_hours": "on", "wh_timezone": "Mars/Olympus"},
            "wh_timezone",
            "privacy.working_hours_only.timezone",
            "not a known time zone",
        ),
        (
            {"working_hours": "on", "wh_from": "9am"},
            "wh_from",
            "privacy.working_hours_only.from",
            "a time as HH:MM",
        ),
        (
            {"working_hours": "on", "wh_days": []},
            "wh_days",
            "privacy.working_hours_only.days",
            "choose at least one",
        ),
        (
            {"excluded_domains": "ok.example\nnot a domain"},
            "excluded_domains",
            "excluded_domains[1]",
            "not a domain name: &#39;not a domain&#39;",
        ),
        (
            {"notice_enabled": "on", "notice_text_en": "This PC is monitored."},
            "notice",
            "notice_mode",
            "a notice needs its text in English and Japanese",
        ),
        (
            {"advanced": "files:\n  interval_seconds: -5\n"},
            "advanced",
            "collectors.files.interval_seconds",
            "must be greater than 0",
        ),
        (
            {"advanced": "files:\n  intervall_seconds: 5\n"},
            "advanced",
            "collectors.files.intervall_seconds",
            "unknown setting",
        ),
        (
            {"advanced": "files:\n  paths: [/home\n"},
            "advanced",
            "advanced",
            "not valid YAML or JSON (line 3, column 1)",
        ),
        (
            {"advanced": '{"web": {"enabled": true}}'},
            "advanced",
            "collectors.web.enabled",
            "switch collectors on and off with the checkboxes above",
        ),
        ({"advanced": "- files\n"}, "advanced", "advanced", "one section per collector"),
    ],
)
def test_a_bad_value_is_refused_next_to_its_field(
    console_server: ServerProcess,
    alice: ConsoleClient,
    bad_group: int,
    *,
    changes: Form,
    field: str,
    path: str,
    message: str,
) -> None:
    group_id = bad_group
    response = _post(alice, f"/policies/{group_id}/preview", _form(**changes))
    assert response.status_code == 400
    shown = re.search(
        rf'<p class="error field-error" id="error-{field}" role="alert">(.*?)</p>',
        response.text,
        re.S,
    )
    assert shown, response.text
    assert f"<code>{path}</code>" in shown.group(1)
    assert message in shown.group(1)
    assert 'id="policy-error"' in response.text and "Nothing was saved" in response.text
    assert 'id="confirm"' not in response.text
    # What the administrator typed stays in the form.
    for name, value in changes.items():
        if isinstance(value, str) and name not in ("working_hours", "notice_enabled"):
            assert str(escape(value)) in response.text
    assert current_policy(console_server.engine(), group_id) is None
    assert _saves(console_server, group_id) == []


def test_a_save_on_top_of_another_is_refused_and_the_new_diff_shown(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    engine = console_server.engine()
    group_id, _ = _new_group(console_server, "pol-stale")
    save_policy(engine, group_id, validate_policy({}), "alice", now_us=now_us())
    preview = _post(
        alice, f"/policies/{group_id}/preview", _form(base_version="1", retention_web="30")
    )
    document, base = _confirm_fields(preview.text)
    assert base == "1"
    # Meanwhile another administrator saves version 2.
    theirs = validate_policy({"collectors": {"files": {"enabled": False}}})
    save_policy(engine, group_id, theirs, "frank", now_us=now_us())

    refused = _post(
        alice,
        f"/policies/{group_id}/save",
        {"document": document, "base_version": base, "comment": "30 days of web"},
    )
    assert refused.status_code == 409
    assert "Not saved: someone else saved this policy" in refused.text
    assert "Version 2 was saved" in refused.text and "frank" in refused.text
    assert _rows(refused.text, "meanwhile") == {"collectors.files.enabled": ("On", "Off")}
    # Saving alice's document now would switch file collection back on: shown plainly.
    assert _rows(refused.text) == {
        "collectors.files.enabled": ("Off", "On"),
        "retention_days.web": ("no limit", "30 days"),
    }
    assert ">30 days of web</textarea>" in refused.text  # the comment is kept
    stored = current_policy(engine, group_id)
    assert stored is not None and stored.version == 2 and stored.created_by == "frank"

    document, base = _confirm_fields(refused.text)
    assert base == "2"
    again = _post(
        alice,
        f"/policies/{group_id}/save",
        {"document": document, "base_version": base, "comment": "30 days of web"},
    )
    assert again.status_code == 303 and again.headers["location"].endswith("?saved=3")
    assert _saves(console_server, group_id) == [1, 2, 3]


def test_an_altered_document_is_validated_again(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    group_id, _ = _new_group(console_server, "pol-altered")
    bad = '{"retention_days": {"web": 0}}'
    response = _post(alice, f"/policies/{group_id}/save", {"document": bad, "base_version": "0"})
    assert response.status_code == 400
    assert "<code>retention_days.web</code>" in response.text
    missing = _post(alice, f"/policies/{group_id}/save", {"document": "{}"})
    assert missing.status_code == 400 and "The form was incomplete" in missing.text
    assert current_policy(console_server.engine(), group_id) is None


def test_overview_and_history_show_who_runs_which_version(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    engine = console_server.engine()
    group_id, pcs = _new_group(console_server, "pol-fleet", hosts=4)
    for comment, retention in (("first", 30), ("longer web", 60)):
        policy = validate_policy({"retention_days": {"web": retention}})
        save_policy(engine, group_id, policy, "alice", comment=comment, now_us=now_us())
    record_applied(engine, pcs[0], 2, now_us=now_us())
    record_applied(engine, pcs[1], 2, now_us=now_us())
    record_applied(engine, pcs[2], 1, now_us=now_us())  # pcs[3] never reported

    overview = alice.get("/policies")
    assert overview.status_code == 200
    row = re.search(rf'<tr data-group-id="{group_id}".*?</tr>', overview.text, re.S)
    assert row, overview.text
    cells = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(0)))
    assert "v2" in cells and "alice" in cells
    assert "v2: 2 v1: 1 not yet reported: 1" in cells
    assert "2 not on v2" in cells
    assert f'href="/policies/{group_id}/history#behind"' in row.group(0)

    history = alice.get(f"/policies/{group_id}/history")
    assert history.status_code == 200
    versions = re.findall(r'<section class="card version" id="v(\d+)"', history.text)
    assert versions == ["2", "1"]
    assert _rows(history.text, "changes-v2") == {"retention_days.web": ("30 days", "60 days")}
    assert _rows(history.text, "changes-v1") == {"retention_days.web": ("no limit", "30 days")}
    assert "longer web" in history.text and "first" in history.text
    behind = re.findall(r'<tr data-device-id="([^"]+)">', history.text)
    assert behind == [pcs[3], pcs[2]]  # never reported first, then by version
    assert 'href="/devices?group=pol-fleet"' in history.text


@pytest.mark.parametrize("name", ["bob", "carol", "dave"])
def test_only_administrators_reach_the_policy_pages(
    console_server: ServerProcess, name: str
) -> None:
    group_id, _ = _new_group(console_server, f"pol-{name}")
    with closing(as_user(console_server, name)) as http:
        assert 'href="/policies"' not in http.get("/").text
        assert http.get("/policies").status_code == 403
        assert http.get(f"/policies/{group_id}").status_code == 403
        assert http.get(f"/policies/{group_id}/history").status_code == 403
        preview = _post(http, f"/policies/{group_id}/preview", _form(retention_web="1"))
        assert preview.status_code == 403
        document = '{"retention_days": {"web": 1}}'
        saved = _post(
            http, f"/policies/{group_id}/save", {"document": document, "base_version": "0"}
        )
        assert saved.status_code == 403
    assert current_policy(console_server.engine(), group_id) is None


def test_a_group_limited_administrator_sees_only_their_groups(
    console_server: ServerProcess,
) -> None:
    engine = console_server.engine()
    mine, _ = _new_group(console_server, "pol-mine")
    other, _ = _new_group(console_server, "pol-other")
    create_user(engine, "heidi", PASSWORD, "administrator", groups_=["pol-mine"])
    with closing(as_user(console_server, "heidi")) as http:
        assert 'href="/policies"' in http.get("/").text
        overview = http.get("/policies").text
        assert re.findall(r'<tr data-group-id="(\d+)"', overview) == [str(mine)]
        assert http.get(f"/policies/{other}").status_code == 404
        assert http.get(f"/policies/{other}/history").status_code == 404
        document = '{"retention_days": {"web": 1}}'
        refused = _post(
            http, f"/policies/{other}/save", {"document": document, "base_version": "0"}
        )
        assert refused.status_code == 404
        assert http.get(f"/policies/{mine}").status_code == 200
    assert current_policy(engine, other) is None


def test_a_save_needs_the_csrf_token(console_server: ServerProcess, alice: ConsoleClient) -> None:
    group_id, _ = _new_group(console_server, "pol-csrf")
    document = '{"retention_days": {"web": 1}}'
    refused = alice.post(
        f"/policies/{group_id}/save", data={"document": document, "base_version": "0"}
    )
    assert refused.status_code == 403
    wrong = alice.post(
        f"/policies/{group_id}/save",
        data={"csrf_token": "x" * 43, "document": document, "base_version": "0"},
    )
    assert wrong.status_code == 403
    preview = alice.post(f"/policies/{group_id}/preview", data=_form())
    assert preview.status_code == 403
    assert current_policy(console_server.engine(), group_id) is None


def test_unknown_groups_are_not_found(alice: ConsoleClient) -> None:
    assert alice.get("/policies/999999").status_code == 404
    assert _post(alice, "/policies/999999/preview", _form()).status_code == 404


def test_the_editor_speaks_japanese(console_server: ServerProcess) -> None:
    group_id, _ = _new_group(console_server, "pol-ja")
    with closing(as_user(console_server, "alice")) as http:
        page = http.get(f"/policies/{group_id}", headers={"Accept-Language": "ja"})
        assert "ポリシー" in page.text
        bad = http.post(
            f"/policies/{group_id}/preview",
            data={"csrf_token": http.csrf, **_form(retention_web="0")},
            headers={"Accept-Language": "ja"},
        )
    assert bad.status_code == 400
    assert "<code>retention_days.web</code>" in bad.text
    assert "1 以上" in bad.text


def test_the_default_policy_round_trips_through_the_form(
    console_server: ServerProcess, alice: ConsoleClient
) -> None:
    group_id, _ = _new_group(console_server, "pol-roundtrip")
    advanced = (
        "files:\n  interval_seconds: 30\n  paths:\n  - /home/*/Documents\n"
        "web:\n  browsers: [firefox, chrome]\n"
    )
    policy = validate_policy(
        {
            "collectors": {
                "files": {"interval_seconds": 30, "paths": ["/home/*/Documents"]},
                "web": {"browsers": ["firefox", "chrome"]},
            },
            "notice_mode": {"enabled": True, "text_ja": "監視中です", "text_en": "Monitored"},
        }
    )
    save_policy(console_server.engine(), group_id, policy, "alice", now_us=now_us())
    page = alice.get(f"/policies/{group_id}").text
    assert "interval_seconds: 30" in page and "/home/*/Documents" in page
    # Submitting the form as shown changes nothing.
    same = _form(
        base_version="1",
        advanced=advanced,
        notice_enabled="on",
        notice_text_ja="監視中です",
        notice_text_en="Monitored",
    )
    preview = _post(alice, f"/policies/{group_id}/preview", same)
    assert 'id="changes">Nothing changes.' in preview.text, preview.text
    assert Policy() != policy
