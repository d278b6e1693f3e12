"""A small fleet with real vulnerability findings for the console tests: the real feed
records of tests/server/vuln/fixtures imported through the importer, inventories from
this machine's real dpkg status file, and V1's matching job run once.

- sales: ``sales-d12`` (Debian 12 as this machine: pam without a bookworm fix) and
  ``sales-old`` (the same with binutils 2.16-1, fixed in 2.17-1);
- hr: ``hr-fedora`` (libwebp 1.3.1, matched by NVD CPE to CVE-2023-4863, which the
  KEV slice lists as known exploited).

The NVD import is dated ten days back, so that feed is stale (the warning banner).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.events.inventory import Package
from sekimori.server.store.schema import vuln_findings
from sekimori.server.store.vulns import DAY_US
from sekimori.server.vuln.importer import import_feed
from sekimori.server.vuln.job import VulnJob
from tests.console.seed import add_device
from tests.server.vuln.fixtures import KEV, NVD, osv_zip
from tests.server.vuln.inventory import read_dpkg_status, store_inventory, with_versions

__all__ = ["VulnFleet", "seed_vuln_fleet"]

PAM = "DEBIAN-CVE-2024-10041"
BINUTILS = "DEBIAN-CVE-2005-4808"
WEBP = "CVE-2023-4863"


@dataclass(frozen=True)
class VulnFleet:
    sales_d12: str
    sales_old: str
    hr_fedora: str


def seed_vuln_fleet(engine: sa.Engine) -> VulnFleet:
    now = now_us()
    import_feed(engine, osv_zip(), source="all.zip", imported_by="test", now_us=now)
    import_feed(
        engine, NVD.read_bytes(), source="nvd.json", imported_by="test", now_us=now - 10 * DAY_US
    )
    import_feed(engine, KEV.read_bytes(), source="kev.json", imported_by="test", now_us=now)
    base = read_dpkg_status()
    enrolled = now - 20 * DAY_US
    sales_d12 = add_device(engine, "sales-d12", group="sales", enrolled_us=enrolled)
    store_inventory(engine, sales_d12, base)
    sales_old = add_device(
        engine, "sales-old", group="sales", enrolled_us=enrolled, agent_version="0.0.9"
    )
    store_inventory(engine, sales_old, with_versions(base, {"binutils": "2.16-1"}))
    hr_fedora = add_device(engine, "hr-fedora", group="hr", enrolled_us=enrolled)
    store_inventory(
        engine,
        hr_fedora,
        [Package("rpm", "libwebp", "1.3.1-1.fc40", "x86_64", "libwebp", "1.3.1-1.fc40")],
        os_id="fedora",
        version_id="40",
    )
    _match(engine)
    return VulnFleet(sales_d12, sales_old, hr_fedora)


def _match(engine: sa.Engine) -> None:
    """Run the matching job once here. The test server runs the same job (first
    after 20 s): while it holds the lease, wait for it — either run matches the
    fleet just seeded."""
    deadline = time.monotonic() + 60
    while VulnJob(engine, owner="console-test").run_once() is None:
        assert time.monotonic() < deadline, "the server's vuln_match job kept its lease"
        time.sleep(0.1)
    with engine.connect() as conn:
        findings = conn.execute(
            sa.select(sa.func.count())
            .select_from(vuln_findings)
            .where(vuln_findings.c.resolved_us.is_(None))
        ).scalar_one()
    assert findings > 0
