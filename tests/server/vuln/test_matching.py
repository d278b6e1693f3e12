"""Matching real feed records against inventories built from a real dpkg status file,
end to end through the store (SQLite and PostgreSQL): import, the job, the queries."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.events.inventory import Package
from sekimori.server.store.schema import vuln_findings, vuln_hits, vulnerabilities
from sekimori.server.store.scope import EVERYTHING, Scope
from sekimori.server.store.vuln_matching import rematch_all
from sekimori.server.store.vulns import (
    DAY_US,
    compliance_series,
    create_exception,
    device_findings,
    exposed_devices,
    feed_status,
    get_vulnerability,
    list_vulnerabilities,
)
from sekimori.server.vuln.importer import import_feed
from sekimori.server.vuln.job import VulnJob
from tests.console.seed import add_device
from tests.server.vuln.fixtures import KEV, NVD, osv_zip
from tests.server.vuln.inventory import read_dpkg_status, store_inventory, with_versions

BASE = read_dpkg_status()


def _import_all(engine: sa.Engine) -> None:
    now = now_us()
    import_feed(engine, osv_zip(), source="all.zip", imported_by="test", now_us=now)
    import_feed(engine, NVD.read_bytes(), source="nvd.json", imported_by="test", now_us=now)
    import_feed(engine, KEV.read_bytes(), source="kev.json", imported_by="test", now_us=now)


def _open(engine: sa.Engine, device_id: str) -> dict[str, tuple[str, str, str | None]]:
    return {
        f.vuln_id: (f.package, f.installed_version, f.fixed_version)
        for f in device_findings(engine, EVERYTHING, device_id, now_us=now_us())
    }


def _device(engine: sa.Engine, name: str, packages: list[Package], **os: str) -> str:
    device_id = add_device(engine, name, group=os.pop("group", "default"))
    store_inventory(engine, device_id, packages, **os)
    return device_id


@pytest.fixture
def fleet(engine: sa.Engine) -> dict[str, str]:
    _import_all(engine)
    devices = {
        # This machine as it is: Debian 12, pam without a bookworm fix.
        "d12": _device(engine, "d12", BASE),
        # The same with an old binutils (fixed in 2.17-1), and with an epoch that
        # makes the same upstream newer than the fix.
        "d12_old": _device(engine, "d12-old", with_versions(BASE, {"binutils": "2.16-1"})),
        "d12_epoch": _device(engine, "d12-epoch", with_versions(BASE, {"binutils": "1:2.16-1"})),
        # bookworm with trixie's fixed pam: bookworm's record has no fix, so still found.
        "d12_trixie_pam": _device(engine, "d12-tp", with_versions(BASE, {"pam": "1.7.0-2"})),
        # Debian 13 below the fix, at it, and at a backport with a tilde (before it).
        "d13_old": _device(
            engine, "d13-old", with_versions(BASE, {"pam": "1.7.0-1"}), version_id="13"
        ),
        "d13_fixed": _device(
            engine, "d13-fixed", with_versions(BASE, {"pam": "1.7.0-2"}), version_id="13"
        ),
        "d13_tilde": _device(
            engine, "d13-tilde", with_versions(BASE, {"pam": "1.7.0-2~bpo12+1"}), version_id="13"
        ),
        "ubuntu_old": _device(
            engine,
            "u22-old",
            [Package("dpkg", "curl", "7.81.0-1ubuntu1.28", "amd64", "curl", "7.81.0-1ubuntu1.28")],
            os_id="ubuntu",
            version_id="22.04",
        ),
        "ubuntu_fixed": _device(
            engine,
            "u22-fixed",
            [Package("dpkg", "curl", "7.81.0-1ubuntu1.29", "amd64", "curl", "7.81.0-1ubuntu1.29")],
            os_id="ubuntu",
            version_id="22.04",
        ),
        "lang": _device(
            engine,
            "lang",
            [
                Package("pypi", "requests", "2.28.1", "", "requests", "2.28.1"),
                Package("pypi", "YmlRef", "0.1.0", "", "YmlRef", "0.1.0"),
                Package("npm", "lodash", "4.17.11", "", "lodash", "4.17.11"),
                Package("npm", "lodash-es", "4.17.21", "", "lodash-es", "4.17.21"),
            ],
        ),
        "fedora": _device(
            engine,
            "fedora",
            [
                Package("rpm", "libwebp", "1.3.1-1.fc40", "x86_64", "libwebp", "1.3.1-1.fc40"),
                Package("rpm", "xz-libs", "5.4.6-3.fc40", "x86_64", "xz", "5.4.6-3.fc40"),
                Package("rpm", "pam", "1.5.2-6.fc40", "x86_64", "pam", "1.5.2-6.fc40"),
            ],
            os_id="fedora",
            version_id="40",
            group="lab",
        ),
    }
    result = VulnJob(engine, owner="test").run_once()
    assert result is not None and result.full
    return devices


def test_debian_matches_by_source_package_and_release(
    engine: sa.Engine, fleet: dict[str, str]
) -> None:
    d12 = _open(engine, fleet["d12"])
    # pam: no fix in bookworm; its binaries (libpam0g, libpam-modules...) are one finding.
    assert d12["DEBIAN-CVE-2024-10041"] == ("pam", "1.5.2-6+deb12u1", None)
    assert "DEBIAN-CVE-2002-1976" in d12  # net-tools, unimportant but open
    # binutils 2.40-2 is past the 2.17-1 fix: not found.
    assert "DEBIAN-CVE-2005-4808" not in d12
    # Nothing of the other ecosystems leaks onto a Debian machine.
    assert not any(v.startswith(("USN-", "GHSA-", "CVE-")) for v in d12)


def test_vulnerable_version_found_fixed_not_epoch_and_tilde(
    engine: sa.Engine, fleet: dict[str, str]
) -> None:
    assert _open(engine, fleet["d12_old"])["DEBIAN-CVE-2005-4808"] == (
        "binutils",
        "2.16-1",
        "2.17-1",
    )
    # 1:2.16-1 sorts after 2.17-1 (epoch 1 > 0).
    assert "DEBIAN-CVE-2005-4808" not in _open(engine, fleet["d12_epoch"])
    assert _open(engine, fleet["d13_old"])["DEBIAN-CVE-2024-10041"] == ("pam", "1.7.0-1", "1.7.0-2")
    assert "DEBIAN-CVE-2024-10041" not in _open(engine, fleet["d13_fixed"])
    # 1.7.0-2~bpo12+1 sorts before 1.7.0-2 (the tilde): still vulnerable.
    assert _open(engine, fleet["d13_tilde"])["DEBIAN-CVE-2024-10041"][2] == "1.7.0-2"


def test_another_releases_fix_is_not_borrowed(engine: sa.Engine, fleet: dict[str, str]) -> None:
    # bookworm at trixie's fixed version: bookworm has no fix, the finding stays.
    assert _open(engine, fleet["d12_trixie_pam"])["DEBIAN-CVE-2024-10041"] == (
        "pam",
        "1.7.0-2",
        None,
    )
    # Ubuntu 22.04 gets jammy's fixed version, not noble's 8.5.0-2ubuntu10.15.
    assert _open(engine, fleet["ubuntu_old"]) == {
        "USN-8820-1": ("curl", "7.81.0-1ubuntu1.28", "7.81.0-1ubuntu1.29")
    }
    assert _open(engine, fleet["ubuntu_fixed"]) == {}


def test_language_ecosystems_and_cpe(engine: sa.Engine, fleet: dict[str, str]) -> None:
    lang = _open(engine, fleet["lang"])
    assert lang == {
        "GHSA-j8r2-6x86-q33q": ("requests", "2.28.1", "2.31.0"),
        "PYSEC-2018-103": ("ymlref", "0.1.0", None),
        "GHSA-jf85-cpcp-j695": ("lodash", "4.17.11", "4.17.12"),
    }
    fedora = device_findings(engine, EVERYTHING, fleet["fedora"], now_us=now_us())
    assert [(f.vuln_id, f.package, f.confidence, f.known_exploited) for f in fedora] == [
        ("CVE-2023-4863", "webmproject:libwebp", "low", True)
    ]


def test_known_exploited_list_and_exposure(engine: sa.Engine, fleet: dict[str, str]) -> None:
    now = now_us()
    webp = get_vulnerability(engine, "CVE-2023-4863")
    assert webp is not None and webp.known_exploited and webp.kev_ransomware == "Unknown"
    assert webp.kev_added_us == 1_694_563_200_000_000  # 2023-09-13
    page = list_vulnerabilities(engine, EVERYTHING, now_us=now, known_exploited_only=True)
    assert [v.id for v in page.items] == ["CVE-2023-4863"]
    pam = list_vulnerabilities(engine, EVERYTHING, now_us=now, search="cve-2024-10041")
    assert [(v.id, v.exposed_devices) for v in pam.items] == [("DEBIAN-CVE-2024-10041", 6)]
    exposed = exposed_devices(engine, EVERYTHING, "CVE-2023-4863", now_us=now)
    assert [(e.hostname, e.fixed_version) for e in exposed] == [("fedora", "1.3.2")]
    assert exposed[0].days_since_fix is not None and exposed[0].days_since_fix > 700
    # Scope: the lab group only sees its own device.
    lab_only = Scope(all_groups=False, group_ids=frozenset({exposed[0].group_id}))
    assert list_vulnerabilities(engine, lab_only, now_us=now).total == 1
    compliance = compliance_series(engine, EVERYTHING, now_us=now, days=3, max_age_days=14)
    assert [(p.devices, p.compliant) for p in compliance][-1] == (len(fleet), len(fleet) - 1)
    kinds = {s.kind: s for s in feed_status(engine, now_us=now)}
    assert not kinds["osv"].stale and kinds["kev"].records == 7
    assert feed_status(engine, now_us=now + 8 * DAY_US)[0].stale


def test_exceptions_hide_findings_until_they_expire(
    engine: sa.Engine, fleet: dict[str, str]
) -> None:
    now = now_us()
    create_exception(
        engine,
        vuln_id="DEBIAN-CVE-2024-10041",
        device_id=fleet["d12"],
        reason="pam: mitigated by configuration",
        expires_us=now + DAY_US,
        created_by="alice",
        now_us=now,
    )
    assert "DEBIAN-CVE-2024-10041" not in _open(engine, fleet["d12"])
    hidden = device_findings(engine, EVERYTHING, fleet["d12"], now_us=now, include_hidden=True)
    assert any(
        f.vuln_id == "DEBIAN-CVE-2024-10041" and f.hidden_until_us == now + DAY_US for f in hidden
    )
    pam = list_vulnerabilities(engine, EVERYTHING, now_us=now, search="CVE-2024-10041")
    assert pam.items[0].exposed_devices == 5
    after = device_findings(engine, EVERYTHING, fleet["d12"], now_us=now + DAY_US + 1)
    assert any(f.vuln_id == "DEBIAN-CVE-2024-10041" for f in after)


def test_incremental_and_full_rematch_agree(engine: sa.Engine, fleet: dict[str, str]) -> None:
    def snapshot() -> set[tuple[str, ...]]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    vuln_findings.c.device_id,
                    vuln_findings.c.vuln_id,
                    vuln_findings.c.package,
                    vuln_findings.c.installed_version,
                    vuln_findings.c.fixed_version,
                ).where(vuln_findings.c.resolved_us.is_(None))
            ).all()
        return {tuple(str(v) for v in r) for r in rows}

    full = snapshot()
    with engine.begin() as conn:
        conn.execute(sa.delete(vuln_findings))
    job = VulnJob(engine, owner="test")
    with engine.begin() as conn:
        for device_id in fleet.values():
            job.evaluator.rematch_device(conn, device_id, now_us=now_us())
    assert snapshot() == full
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(vulnerabilities)).scalar_one() == 10
        )


def test_first_full_write_rebuilds_the_findings_indexes(
    engine: sa.Engine, fleet: dict[str, str]
) -> None:
    """The first full re-match drops the findings' secondary indexes, writes, and
    re-creates them from the schema: same findings, same indexes, and a rolled-back
    run leaves both as they were."""

    def findings() -> set[tuple[str, ...]]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    vuln_findings.c.device_id,
                    vuln_findings.c.vuln_id,
                    vuln_findings.c.ecosystem,
                    vuln_findings.c.package,
                    vuln_findings.c.installed_version,
                    vuln_findings.c.fixed_version,
                    vuln_findings.c.fix_available_us,
                    vuln_findings.c.feed,
                    vuln_findings.c.confidence,
                ).where(vuln_findings.c.resolved_us.is_(None))
            ).all()
        return {tuple(str(v) for v in r) for r in rows}

    def indexes() -> list[tuple[str, tuple[str, ...]]]:
        with engine.connect() as conn:
            found = sa.inspect(conn).get_indexes("vuln_findings")
        return sorted((str(i["name"]), tuple(str(c) for c in i["column_names"])) for i in found)

    schema_indexes = sorted(
        (str(i.name), tuple(c.name for c in i.columns)) for i in vuln_findings.indexes
    )
    assert indexes() == schema_indexes
    before = findings()
    with engine.connect() as conn:
        hits = [dict(r._mapping) for r in conn.execute(sa.select(vuln_hits)).all()]
    assert hits and before
    with engine.begin() as conn:
        conn.execute(sa.delete(vuln_findings))
        conn.execute(sa.delete(vuln_hits))
    with engine.connect() as conn:
        opened, _ = rematch_all(conn, hits, now_us=now_us())
        assert opened == len(before)
        conn.rollback()
    assert findings() == set()
    assert indexes() == schema_indexes
    with engine.connect() as conn:
        rematch_all(conn, hits, now_us=now_us())
        conn.commit()
    assert findings() == before
    assert indexes() == schema_indexes
