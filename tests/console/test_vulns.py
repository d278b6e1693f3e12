"""The vulnerability console against a real server: the list, a vulnerability's page,
a device's tab, scope (an operator of another group sees nothing of it), exceptions
(field errors, audit, expiry), feed upload (a malformed file changes nothing), the
compliance page, the dashboard card and the alert rule on /rules."""

from __future__ import annotations

import datetime as dt
import json
import re
from contextlib import closing

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.audit import search_audit
from sekimori.server.store.schema import groups, vuln_exceptions
from sekimori.server.store.vulns import DAY_US, create_exception, feed_status
from tests.console.conftest import as_user
from tests.console.vuln_seed import BINUTILS, PAM, WEBP, VulnFleet, seed_vuln_fleet
from tests.processes import ServerProcess
from tests.server.vuln.fixtures import KEV


@pytest.fixture(scope="module")
def fleet(console_server: ServerProcess) -> VulnFleet:
    return seed_vuln_fleet(console_server.engine())


def _rows(html: str, attr: str = "data-vuln-id") -> list[str]:
    return re.findall(rf'<tr {attr}="([^"]+)"', html)


def _exposed(html: str, vuln_id: str) -> int:
    row = html.split(f'<tr data-vuln-id="{vuln_id}">', 1)[1].split("</tr>", 1)[0]
    found = re.search(r'data-exposed="(\d+)"', row)
    assert found, row
    return int(found.group(1))


def test_the_list_counts_exposed_pcs_and_filters(
    console_server: ServerProcess, fleet: VulnFleet
) -> None:
    with closing(as_user(console_server, "alice")) as alice:
        page = alice.get("/vulnerabilities")
        assert page.status_code == 200
        assert "Server-Timing" in page.headers
        listed = _rows(page.text)
        assert {PAM, BINUTILS, WEBP} <= set(listed)
        assert _exposed(page.text, PAM) == 2 and _exposed(page.text, BINUTILS) == 1
        assert 'href="/vulnerabilities"' in page.text  # the menu
        # The stale NVD import (ten days old) is warned about.
        assert 'id="stale-feeds"' in page.text and "NVD CVE (CPE)" in page.text
        kev = alice.get("/vulnerabilities", params={"kev": "1"})
        assert _rows(kev.text) == [WEBP]
        assert "Known exploited" in kev.text
        found = alice.get("/vulnerabilities", params={"q": "cve-2005-4808"})
        assert _rows(found.text) == [BINUTILS]
        by_id = _rows(alice.get("/vulnerabilities", params={"sort": "id"}).text)
        assert by_id == sorted(by_id)
        high = alice.get("/vulnerabilities", params={"severity": "HIGH"})
        assert WEBP in _rows(high.text)  # CVSS 8.8 HIGH (NVD)
        none = alice.get("/vulnerabilities", params={"q": "no-such-thing"})
        assert _rows(none.text) == [] and 'id="no-vulns"' in none.text


def test_the_vulnerability_page(console_server: ServerProcess, fleet: VulnFleet) -> None:
    with closing(as_user(console_server, "alice")) as alice:
        page = alice.get(f"/vulnerabilities/{WEBP}")
        assert page.status_code == 200
        html = page.text
        assert 'id="vuln-kev"' in html
        assert '<dd id="kev-added">2023-09-13</dd>' in html
        assert re.search(r'id="kev-ransomware">Unknown', html)
        row = html.split(f'<tr data-device-id="{fleet.hr_fedora}"', 1)[1].split("</tr>", 1)[0]
        assert "hr-fedora" in row and ">1.3.1" in row and "1.3.2" in row
        days = int(re.search(r'data-days="(\d+)"', row).group(1))  # type: ignore[union-attr]
        assert days > 700
        assert "Lower confidence (CPE)" in row  # an NVD CPE match
        assert "https://nvd.nist.gov/vuln/detail/CVE-2023-4863" in html
        pam = alice.get(f"/vulnerabilities/{PAM}").text
        assert "CVE-2024-10041" in pam.split('id="vuln-aliases"', 1)[1].split("</dd>", 1)[0]
        assert 'id="vuln-kev"' not in pam
        assert alice.get("/vulnerabilities/NO-SUCH-1").status_code == 404


def test_a_devices_tab(console_server: ServerProcess, fleet: VulnFleet) -> None:
    with closing(as_user(console_server, "bob")) as bob:
        page = bob.get(f"/devices/{fleet.sales_old}", params={"tab": "vulnerabilities"})
        assert page.status_code == 200
        assert 'id="device-vulns"' in page.text
        row = page.text.split(f'<tr data-vuln-id="{BINUTILS}">', 1)[1].split("</tr>", 1)[0]
        assert "binutils" in row and "2.16-1" in row and "2.17-1" in row
        assert PAM in _rows(page.text)
        clean = bob.get(f"/devices/{fleet.sales_d12}", params={"tab": "vulnerabilities"})
        assert BINUTILS not in _rows(clean.text)


def test_scope_an_operator_of_another_group_sees_nothing(
    console_server: ServerProcess, fleet: VulnFleet
) -> None:
    with closing(as_user(console_server, "bob")) as bob:  # sales
        listed = bob.get("/vulnerabilities")
        assert WEBP not in _rows(listed.text) and PAM in _rows(listed.text)
        assert bob.get("/vulnerabilities", params={"kev": "1"}).text.count("<tr data-vuln") == 0
        webp = bob.get(f"/vulnerabilities/{WEBP}")
        assert webp.status_code == 200 and 'id="no-exposed"' in webp.text
        assert "hr-fedora" not in webp.text
        tab = bob.get(f"/devices/{fleet.hr_fedora}", params={"tab": "vulnerabilities"})
        assert tab.status_code == 404
        compliance = bob.get("/vulnerabilities/compliance").text
        assert "hr-fedora" not in compliance
    with closing(as_user(console_server, "erin")) as erin:  # hr
        listed = erin.get("/vulnerabilities")
        assert _rows(listed.text) == [WEBP]
        assert "sales-" not in erin.get(f"/vulnerabilities/{PAM}").text


def test_permissions_by_url_and_menu(console_server: ServerProcess, fleet: VulnFleet) -> None:
    with closing(as_user(console_server, "dave")) as dave:  # viewer
        assert dave.get("/vulnerabilities").status_code == 403
        assert dave.get(f"/vulnerabilities/{WEBP}").status_code == 403
        home = dave.get("/")
        assert 'href="/vulnerabilities"' not in home.text and 'id="vulns-card"' not in home.text
    with closing(as_user(console_server, "carol")) as carol:  # auditor: reads, changes nothing
        assert carol.get("/vulnerabilities").status_code == 200
        assert carol.get("/vulnerabilities/exceptions").status_code == 200
        assert carol.get("/vulnerabilities/exceptions/new").status_code == 403
        assert "Accept…" not in carol.get(f"/vulnerabilities/{WEBP}").text
        assert 'id="feed-upload"' not in carol.get("/vulnerabilities/feeds").text
    with closing(as_user(console_server, "bob")) as bob:  # operator: no exceptions, no uploads
        assert bob.get("/vulnerabilities/exceptions/new").status_code == 403
        refused = bob.submit(
            "/vulnerabilities/exceptions/new",
            {"vuln_id": PAM, "target": "group", "group_id": "1", "reason": "x"},
        )
        assert refused.status_code == 403
        upload = bob.post(
            "/vulnerabilities/feeds/upload",
            data={"csrf_token": bob.csrf},
            files={"file": ("kev.json", KEV.read_bytes(), "application/json")},
        )
        assert upload.status_code == 403
        assert "Accept…" not in bob.get(f"/vulnerabilities/{PAM}").text


def _group_id(console_server: ServerProcess, name: str) -> int:
    with console_server.engine().connect() as conn:
        return int(conn.execute(sa.select(groups.c.id).where(groups.c.name == name)).scalar_one())


def _exception_count(console_server: ServerProcess) -> int:
    with console_server.engine().connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(vuln_exceptions)).scalar_one()
        )


def test_exceptions_form_errors_create_edit_delete_audited(
    console_server: ServerProcess, fleet: VulnFleet
) -> None:
    sales = _group_id(console_server, "sales")
    today = dt.datetime.now(dt.UTC).date()  # the test server's console zone is UTC
    year, later = str(today + dt.timedelta(days=365)), str(today + dt.timedelta(days=300))
    with closing(as_user(console_server, "alice")) as alice:
        before = _exception_count(console_server)
        bad = alice.submit(
            "/vulnerabilities/exceptions/new",
            {
                "vuln_id": "NO-SUCH-1",
                "target": "group",
                "group_id": str(sales),
                "reason": "",
                "expires": "2020-01-01",
            },
        )
        assert bad.status_code == 400
        assert 'id="error-vuln_id"' in bad.text and 'id="error-reason"' in bad.text
        assert 'id="error-expires"' in bad.text
        assert _exception_count(console_server) == before  # nothing created

        form = alice.get(
            "/vulnerabilities/exceptions/new", params={"vuln": PAM, "device": fleet.sales_old}
        )
        assert form.status_code == 200 and fleet.sales_old in form.text
        created = alice.submit(
            "/vulnerabilities/exceptions/new",
            {
                "vuln_id": PAM,
                "target": "group",
                "group_id": str(sales),
                "package": "pam",
                "reason": "no fix in bookworm; pam_access not used",
                "expires": year,
            },
        )
        assert created.status_code == 303, created.text
        # Hidden from the list and counts; shown as accepted on the device's tab.
        assert PAM not in _rows(alice.get("/vulnerabilities").text)
        tab = alice.get(f"/devices/{fleet.sales_d12}", params={"tab": "vulnerabilities"}).text
        accepted = tab.split('id="device-accepted"', 1)[1]
        assert PAM in accepted and "pam_access not used" in accepted and year in accepted
        entry = search_audit(console_server.engine(), action="vuln.exception.create").entries[0]
        assert entry.actor == "alice" and entry.target == PAM
        assert json.loads(entry.detail)["group_id"] == sales

        listed = alice.get("/vulnerabilities/exceptions").text
        ident = int(re.findall(r'<tr data-exception-id="(\d+)"', listed)[0])
        edited = alice.submit(
            f"/vulnerabilities/exceptions/{ident}", {"reason": "", "expires": later}
        )
        assert edited.status_code == 400 and 'id="error-reason"' in edited.text
        edited = alice.submit(
            f"/vulnerabilities/exceptions/{ident}",
            {"reason": "reviewed again", "expires": later},
        )
        assert edited.status_code == 303
        assert "reviewed again" in alice.get("/vulnerabilities/exceptions").text
        assert search_audit(console_server.engine(), action="vuln.exception.update").total == 1

        deleted = alice.submit(f"/vulnerabilities/exceptions/{ident}/delete")
        assert deleted.status_code == 303
        assert PAM in _rows(alice.get("/vulnerabilities").text)  # shows again at once
        assert search_audit(console_server.engine(), action="vuln.exception.delete").total == 1
        assert alice.submit(f"/vulnerabilities/exceptions/{ident}/delete").status_code == 404


def test_an_expired_exception_shows_the_finding_again(
    console_server: ServerProcess, fleet: VulnFleet
) -> None:
    now = now_us()
    create_exception(
        console_server.engine(),
        vuln_id=BINUTILS,
        device_id=fleet.sales_old,
        reason="accepted last week",
        expires_us=now - DAY_US,
        created_by="alice",
        now_us=now - 8 * DAY_US,
    )
    with closing(as_user(console_server, "alice")) as alice:
        assert BINUTILS in _rows(alice.get("/vulnerabilities").text)
        tab = alice.get(f"/devices/{fleet.sales_old}", params={"tab": "vulnerabilities"}).text
        assert BINUTILS in _rows(tab.split('id="device-findings"', 1)[1].split("</section>")[0])
        assert 'id="device-accepted"' not in tab
        assert "accepted last week" not in alice.get("/vulnerabilities/exceptions").text
        shown = alice.get("/vulnerabilities/exceptions", params={"expired": "1"}).text
        assert "accepted last week" in shown and "Expired" in shown


def test_feed_upload_malformed_changes_nothing(
    console_server: ServerProcess, fleet: VulnFleet
) -> None:
    engine = console_server.engine()
    before = {s.kind: (s.records, s.last_ok_us) for s in feed_status(engine, now_us=now_us())}
    truncated = KEV.read_bytes()[:-40]
    with closing(as_user(console_server, "alice")) as alice:
        refused = alice.post(
            "/vulnerabilities/feeds/upload",
            data={"csrf_token": alice.csrf},
            files={"file": ("kev.json", truncated, "application/json")},
        )
        assert refused.status_code == 400
        assert 'id="feed-error"' in refused.text and "nothing was changed" in refused.text
        after = {s.kind: (s.records, s.last_ok_us) for s in feed_status(engine, now_us=now_us())}
        assert after == before
        assert _rows(alice.get("/vulnerabilities", params={"kev": "1"}).text) == [WEBP]
        audit = search_audit(engine, action="vuln.feed.import").entries[0]
        assert json.loads(audit.detail)["result"] == "refused"

        empty = alice.post("/vulnerabilities/feeds/upload", data={"csrf_token": alice.csrf})
        assert empty.status_code == 400

        ok = alice.post(
            "/vulnerabilities/feeds/upload",
            data={"csrf_token": alice.csrf, "kind": "kev"},
            files={"file": ("kev.json", KEV.read_bytes(), "application/json")},
        )
        assert ok.status_code == 303 and ok.headers["location"].endswith("imported=kev")
        page = alice.get(ok.headers["location"]).text
        assert 'id="feed-imported"' in page and "upload:kev.json" in page
        audit = search_audit(engine, action="vuln.feed.import").entries[0]
        assert json.loads(audit.detail) | {"records": 7, "result": "imported"} == json.loads(
            audit.detail
        )


def test_compliance_dashboard_and_rules(console_server: ServerProcess, fleet: VulnFleet) -> None:
    with closing(as_user(console_server, "alice")) as alice:
        page = alice.get("/vulnerabilities/compliance", params={"days": "14"})
        assert page.status_code == 200
        chart = json.loads(
            page.text.split('<script type="application/json" id="compliance-chart">', 1)[1].split(
                "</script>", 1
            )[0]
        )
        assert chart["type"] == "line" and len(chart["labels"]) == 30
        # hr-fedora has CVE-2023-4863, fixed long ago: 2 of 3 PCs compliant today.
        assert chart["datasets"][0]["data"][-1] == pytest.approx(66.7)
        assert "2 of 3 PCs today" in page.text
        # Agent versions: sales-old runs 0.0.9; no minimum is set in this deployment.
        assert '<tr data-version="0.0.9">' in page.text
        assert "No minimum agent version is set" in page.text
        home = alice.get("/").text
        assert 'id="vulns-card"' in home and f'<tr data-vuln-id="{WEBP}">' in home
        assert 'id="stale-feeds"' in home.split('id="vulns-card"', 1)[1]  # NVD: 10 days
        rules = alice.get("/rules").text
        assert "builtin.known_exploited_vulnerability" in rules
    with closing(as_user(console_server, "bob")) as bob:
        assert 'id="kev-none"' in bob.get("/").text  # sales has no known-exploited one
        page = bob.get("/vulnerabilities/compliance", params={"days": "0"})
        assert "2 of 2 PCs today" in page.text


def test_japanese(console_server: ServerProcess, fleet: VulnFleet) -> None:
    with closing(as_user(console_server, "alice")) as alice:
        alice.submit("/account/locale", {"locale": "ja"})
        try:
            page = alice.get("/vulnerabilities").text
            assert "脆弱性" in page and "悪用" in page
        finally:
            alice.submit("/account/locale", {"locale": "en"})
