"""Alerts in the console, over HTTP against a real server: the list and its filters,
an alert with its matching events, its life (acknowledge, resolve, reopen, assign,
comment) with history and audit entries, the dashboard card and the device page —
each within the user's device groups and role. The alerts are raised by the real
ingest rules on stored events (tests/console/alert_seed.py)."""

from __future__ import annotations

import html
import re
import uuid
from contextlib import closing
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from sekimori.server.store.alert_queries import COMMENT_MAX
from sekimori.server.store.audit import AuditEntry, search_audit
from sekimori.server.store.schema import alert_comments
from tests.console.alert_seed import alert_ids, copied_to_usb, ingest, usb_stick
from tests.console.conftest import ConsoleClient, as_user
from tests.console.seed import add_device
from tests.processes import ServerProcess

_ROW = re.compile(r'<tr data-alert-id="(\d+)"')


def _ids(page: str) -> list[int]:
    return [int(i) for i in _ROW.findall(page)]


@dataclass(frozen=True)
class Raised:
    device_id: str
    hostname: str
    copy_alert: int
    usb_alert: int


def _raise(server: ServerProcess, group: str) -> Raised:
    """A fresh PC in ``group`` with two copies to a USB stick (one high alert, count 2)
    and a stick plugged in (one medium alert)."""
    engine = server.engine()
    hostname = f"{group}-{uuid.uuid4().hex[:8]}"
    device_id = add_device(engine, hostname, group=group)
    ingest(
        engine,
        device_id,
        [copied_to_usb(f"/media/usb/{hostname}-plan.xlsx"), copied_to_usb("/media/usb/b.txt")],
    )
    ingest(engine, device_id, [usb_stick()])
    copy_alert, usb_alert = alert_ids(engine, device_id)
    return Raised(device_id, hostname, copy_alert, usb_alert)


def _audit(server: ServerProcess, actor: str, action: str, alert_id: int) -> list[AuditEntry]:
    found = search_audit(server.engine(), actor=actor, action=action, limit=500).entries
    return [e for e in found if e.target == f"alert:{alert_id}"]


def _history(server: ServerProcess, alert_id: int) -> list[tuple[str, str, str]]:
    with server.engine().connect() as conn:
        rows = conn.execute(
            sa.select(alert_comments.c.author, alert_comments.c.action, alert_comments.c.body)
            .where(alert_comments.c.alert_id == alert_id)
            .order_by(alert_comments.c.id)
        )
        return [(r.author, r.action, r.body) for r in rows]


def test_the_list_shows_alerts_newest_first_and_filters_them(
    console_server: ServerProcess,
) -> None:
    pc = _raise(console_server, "sales")
    with closing(as_user(console_server, "alice")) as alice:
        page = alice.get("/alerts")
        assert page.status_code == 200
        shown = _ids(page.text)
        # Newest first: the USB stick came after the copies.
        assert shown.index(pc.usb_alert) < shown.index(pc.copy_alert)
        row = page.text[page.text.index(f'data-alert-id="{pc.copy_alert}"') :]
        row = row[: row.index("</tr>")]
        assert "File copied to removable media" in row
        assert f'href="/devices/{pc.device_id}"' in row and pc.hostname in row
        assert f"{pc.hostname}-plan.xlsx" in row  # the summary
        assert '<td class="num">2</td>' in row  # two copies, one alert
        assert 'data-severity="high"' in row and 'data-status="open"' in row

        def ids(**params: str) -> list[int]:
            response = alice.get("/alerts", params=params)
            assert response.status_code == 200, response.text
            return _ids(response.text)

        assert ids(device=pc.hostname) == [pc.usb_alert, pc.copy_alert]
        assert ids(device=pc.device_id, severity="medium") == [pc.usb_alert]
        assert ids(device=pc.hostname, rule="builtin.file_copied_to_removable") == [pc.copy_alert]
        assert ids(q=f"{pc.hostname}-plan") == [pc.copy_alert]
        assert ids(device=pc.hostname, status="resolved") == []
        assert ids(device=pc.hostname, status="all", since="1h") == [pc.usb_alert, pc.copy_alert]
        assert ids(device=pc.hostname, until="2001-01-01T00:00") == []
        assert ids(device=pc.hostname, assignee="-") == [pc.usb_alert, pc.copy_alert]
        for bad in ({"status": "closed"}, {"severity": "huge"}, {"page": "0"}, {"since": "x"}):
            response = alice.get("/alerts", params=bad)
            assert response.status_code == 400, bad
            assert 'role="alert"' in response.text


def test_an_alert_shows_its_matching_events_and_viewing_it_is_audited(
    console_server: ServerProcess,
) -> None:
    pc = _raise(console_server, "sales")
    with closing(as_user(console_server, "alice")) as alice:
        page = alice.get(f"/alerts/{pc.copy_alert}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "builtin.file_copied_to_removable" in text
    assert '<dd id="alert-count">2</dd>' in text
    events = text[text.index('id="alert-events"') :]
    events = events[: events.index("</table>")]
    assert events.count("<tr data-seq=") == 2
    assert f"/media/usb/{pc.hostname}-plan.xlsx" in events and "/media/usb/b.txt" in events
    assert "taro" in events  # the OS user
    assert f'href="/devices/{pc.device_id}?tab=activity&kind=file.copied_to_removable"' in events
    (entry,) = _audit(console_server, "alice", "alert.view", pc.copy_alert)
    assert entry.detail_dict() == {
        "device_id": pc.device_id,
        "hostname": pc.hostname,
        "rule_id": "builtin.file_copied_to_removable",
        "events_shown": 2,
    }


def test_acknowledge_resolve_reopen_with_history_and_audit(console_server: ServerProcess) -> None:
    pc = _raise(console_server, "sales")
    url = f"/alerts/{pc.copy_alert}"
    with closing(as_user(console_server, "bob")) as bob:
        done = bob.submit(f"{url}/status", {"action": "acknowledge"})
        assert done.status_code == 303 and done.headers["location"] == f"{url}?done=acknowledge"
        page = bob.get(done.headers["location"]).text
        assert 'data-status="acknowledged"' in page and 'id="done"' in page
        # Acknowledged: off the dashboard's open list, still in the default list.
        assert pc.copy_alert in _ids(bob.get("/alerts").text)
        # Acknowledging twice changes nothing and says so.
        again = bob.submit(f"{url}/status", {"action": "acknowledge"})
        assert again.status_code == 400 and 'id="error"' in again.text

        assert bob.submit(f"{url}/status", {"action": "resolve"}).status_code == 303
        page = bob.get(url).text
        assert 'data-status="resolved"' in page and 'id="reopen"' in page
        assert 'id="resolve"' not in page
        assert pc.copy_alert not in _ids(bob.get("/alerts").text)  # default: not resolved
        assert pc.copy_alert in _ids(bob.get("/alerts", params={"status": "resolved"}).text)

        assert bob.submit(f"{url}/status", {"action": "reopen"}).status_code == 303
        page = bob.get(url).text
        assert 'data-status="open"' in page
        history = page[page.index('id="history"') :]
        assert history.count('data-action="status"') == 3
        assert "set the status to Acknowledged" in history
        assert "set the status to Resolved" in history
        assert "set the status to Open" in history
        assert bob.submit(f"{url}/status", {"action": "delete"}).status_code == 400
    assert _history(console_server, pc.copy_alert) == [
        ("bob", "status", "acknowledged"),
        ("bob", "status", "resolved"),
        ("bob", "status", "open"),
    ]
    for action, old, new in (
        ("alert.acknowledge", "open", "acknowledged"),
        ("alert.resolve", "acknowledged", "resolved"),
        ("alert.reopen", "resolved", "open"),
    ):
        entries = _audit(console_server, "bob", action, pc.copy_alert)
        ok = [e.detail_dict() for e in entries if e.detail_dict()["result"] == "ok"]
        assert ok == [
            {
                "device_id": pc.device_id,
                "rule_id": "builtin.file_copied_to_removable",
                "status": {"old": old, "new": new},
                "result": "ok",
            }
        ]


def test_the_audit_trail_names_alert_actions(console_server: ServerProcess) -> None:
    pc = _raise(console_server, "sales")
    with closing(as_user(console_server, "alice")) as alice:
        assert alice.submit(
            f"/alerts/{pc.copy_alert}/status", {"action": "resolve"}
        ).status_code == (303)
        trail = alice.get("/audit", params={"action": "alert.resolve", "target": "alert:"}).text
    assert f"alert:{pc.copy_alert}" in trail and "Resolved an alert" in trail
    assert '<option value="alert.resolve" selected>' in trail


def test_assign_and_comment(console_server: ServerProcess) -> None:
    pc = _raise(console_server, "sales")
    url = f"/alerts/{pc.usb_alert}"
    with closing(as_user(console_server, "alice")) as alice:
        page = alice.get(url).text
        choices = re.findall(r'<option value="([^"]*)"', page[page.index('id="assign"') :])
        # Who may handle a sales alert: administrators and sales operators, not the
        # auditor, the viewer or the hr operator.
        assert choices[0] == "" and {"alice", "bob"} <= set(choices)
        assert not {"carol", "dave", "erin"} & set(choices)
        done = alice.submit(f"{url}/assign", {"assignee": "bob"})
        assert done.status_code == 303 and done.headers["location"] == f"{url}?done=assign"
        assert '<dd id="alert-assignee">bob</dd>' in alice.get(url).text
        refused = alice.submit(f"{url}/assign", {"assignee": "erin"})
        assert refused.status_code == 400
        assert "may not handle alerts of this device" in html.unescape(refused.text)
        assert pc.usb_alert in _ids(alice.get("/alerts", params={"assignee": "bob"}).text)

        note = "Spoke to the user <b>Taro</b>: the stick is the company's."
        assert alice.submit(f"{url}/comment", {"body": note}).status_code == 303
        page = alice.get(url).text
        assert "<b>Taro</b>" not in page  # escaped, not markup
        assert html.escape(note, quote=False) in page.replace("&#39;", "'")
        too_long = alice.submit(f"{url}/comment", {"body": "x" * (COMMENT_MAX + 1)})
        assert too_long.status_code == 400
        assert f"at most {COMMENT_MAX} characters" in too_long.text
        assert "x" * 100 in too_long.text  # the text typed is kept
        assert alice.submit(f"{url}/assign", {"assignee": ""}).status_code == 303
        assert '<dd id="alert-assignee">Nobody</dd>' in alice.get(url).text
    assert _history(console_server, pc.usb_alert) == [
        ("alice", "assign", "bob"),
        ("alice", "comment", note),
        ("alice", "assign", ""),
    ]
    assigned = _audit(console_server, "alice", "alert.assign", pc.usb_alert)
    assert [e.detail_dict()["result"] for e in assigned] == [
        "ok",
        "not_eligible",
        "ok",
    ]  # newest first
    (commented,) = _audit(console_server, "alice", "alert.comment", pc.usb_alert)
    assert commented.detail_dict()["length"] == len(note)


def test_bulk_acknowledge_of_selected_alerts(console_server: ServerProcess) -> None:
    pc = _raise(console_server, "sales")
    other = _raise(console_server, "hr")
    with closing(as_user(console_server, "bob")) as bob:
        back = f"/alerts?device={pc.hostname}"
        response = bob.post(
            "/alerts/bulk",
            data={
                "csrf_token": bob.csrf,
                "action": "acknowledge",
                "back": back,
                # bob's two, and one of the hr group he cannot see: skipped.
                "ids": [str(pc.copy_alert), str(pc.usb_alert), str(other.copy_alert)],
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"{back}&done=acknowledge"
        page = bob.get(response.headers["location"]).text
        assert page.count('data-status="acknowledged"') >= 2 and 'id="done"' in page
        evil = bob.post(
            "/alerts/bulk",
            data={"csrf_token": bob.csrf, "action": "resolve", "back": "https://evil.example/"},
        )
        assert evil.headers["location"] == "/alerts?done=unchanged"
    with closing(as_user(console_server, "alice")) as alice:
        assert 'data-status="open"' in alice.get(f"/alerts/{other.copy_alert}").text


def test_an_operator_cannot_reach_another_groups_alert(console_server: ServerProcess) -> None:
    hr = _raise(console_server, "hr")
    with closing(as_user(console_server, "bob")) as bob:
        assert hr.copy_alert not in _ids(bob.get("/alerts", params={"status": "all"}).text)
        assert _ids(bob.get("/alerts", params={"device": hr.device_id}).text) == []
        page = bob.get(f"/alerts/{hr.copy_alert}")
        assert page.status_code == 404 and hr.hostname not in page.text
        for path, data in (
            ("status", {"action": "resolve"}),
            ("assign", {"assignee": "bob"}),
            ("comment", {"body": "hello"}),
        ):
            assert bob.submit(f"/alerts/{hr.copy_alert}/{path}", data).status_code == 404
        assert bob.get("/alerts/999999999").status_code == 404
        assert bob.get("/alerts/99999999999999999999999").status_code == 404
        assert hr.hostname not in bob.get("/").text
    assert _history(console_server, hr.copy_alert) == []
    assert _audit(console_server, "bob", "alert.view", hr.copy_alert) == []
    with closing(as_user(console_server, "erin")) as erin:
        assert erin.get(f"/alerts/{hr.copy_alert}").status_code == 200


@pytest.mark.parametrize("name", ["carol", "dave"])
def test_auditors_and_viewers_have_no_alerts(console_server: ServerProcess, name: str) -> None:
    pc = _raise(console_server, "sales")
    with closing(as_user(console_server, name)) as http:
        home = http.get("/").text
        assert 'href="/alerts"' not in home and 'id="alerts-card"' not in home
        assert http.get("/alerts").status_code == 403
        assert http.get(f"/alerts/{pc.copy_alert}").status_code == 403
        assert http.submit(
            f"/alerts/{pc.copy_alert}/status", {"action": "resolve"}
        ).status_code == (403)
        assert http.submit("/alerts/bulk", {"action": "resolve"}).status_code == 403
    assert _history(console_server, pc.copy_alert) == []


def test_changes_need_the_csrf_token(console_server: ServerProcess) -> None:
    pc = _raise(console_server, "sales")
    with closing(as_user(console_server, "alice")) as alice:
        for path, data in (
            ("status", {"action": "acknowledge"}),
            ("assign", {"assignee": "alice"}),
            ("comment", {"body": "hello"}),
        ):
            assert alice.post(f"/alerts/{pc.copy_alert}/{path}", data=data).status_code == 403
            forged = {"csrf_token": "0" * 43, **data}
            assert alice.post(f"/alerts/{pc.copy_alert}/{path}", data=forged).status_code == 403
        page = alice.get(f"/alerts/{pc.copy_alert}").text
    assert 'data-status="open"' in page
    assert _history(console_server, pc.copy_alert) == []


def _card(client: ConsoleClient) -> str:
    home = client.get("/")
    assert home.status_code == 200
    card = home.text[home.text.index('id="alerts-card"') :]
    return card[: card.index("</section>")]


def test_the_dashboard_and_the_device_page_link_open_alerts(console_server: ServerProcess) -> None:
    pc = _raise(console_server, "sales")
    with closing(as_user(console_server, "bob")) as bob:
        assert 'href="/alerts"' in bob.get("/").text  # in the menu
        card = _card(bob)
        high = re.search(r'data-severity="high">\s*<a class="n" href="([^"]+)">(\d+)</a>', card)
        assert high and int(high.group(2)) >= 1
        assert html.unescape(high.group(1)) == "/alerts?status=open&severity=high"
        # The newest open alerts, linked: the stick came last.
        assert f'<a href="/alerts/{pc.usb_alert}">' in card
        device = bob.get(f"/devices/{pc.device_id}").text
        section = device[device.index('id="device-alerts"') :]
        section = section[: section.index("</section>")]
        assert _ids(section) == [pc.usb_alert, pc.copy_alert]
        assert f'<a href="/alerts/{pc.copy_alert}">' in section
        # Once resolved, an alert leaves both.
        assert bob.submit(f"/alerts/{pc.usb_alert}/status", {"action": "resolve"}).status_code == (
            303
        )
        assert f"/alerts/{pc.usb_alert}" not in _card(bob)
        device = bob.get(f"/devices/{pc.device_id}").text
        assert f"/alerts/{pc.usb_alert}" not in device
    with closing(as_user(console_server, "carol")) as carol:
        # An auditor's dashboard has no alerts card, and no device page at all.
        assert 'id="alerts-card"' not in carol.get("/").text


def test_japanese_labels(console_server: ServerProcess) -> None:
    pc = _raise(console_server, "sales")
    with closing(as_user(console_server, "alice")) as alice:
        alice.headers["accept-language"] = "ja"
        page = alice.get(f"/alerts/{pc.usb_alert}").text
    assert ">中</span>" in page  # the severity "medium", not removable "media"
    assert "未対応" in page and "該当イベント" in page
