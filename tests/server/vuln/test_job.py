"""The vuln_match job picks up inventory events stored by the real ingest path
(payload validation in ``stored_batch``, group commit in ``IngestWriter``) and
re-matches only the devices that changed; a feed import re-matches everyone."""

from __future__ import annotations

import asyncio

import msgspec
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.events import Event, Payload
from sekimori.protocol.events.agent import AgentStarted
from sekimori.protocol.events.inventory import SoftwareInstalled, SoftwareUpgraded
from sekimori.server.batch_rows import stored_batch
from sekimori.server.ingest import IngestWriter
from sekimori.server.metrics import Metrics
from sekimori.server.store.schema import devices, vuln_device_state, vuln_findings
from sekimori.server.vuln.importer import import_feed
from sekimori.server.vuln.job import VulnJob
from tests.console.seed import add_device
from tests.server.vuln.fixtures import KEV, osv_record, osv_zip
from tests.server.vuln.inventory import read_dpkg_status, store_inventory, with_versions


def _ingest(engine: sa.Engine, device_id: str, items: list[tuple[str, Payload]]) -> None:
    with engine.connect() as conn:
        floor = int(
            conn.execute(
                sa.select(devices.c.acked_seq).where(devices.c.id == device_id)
            ).scalar_one()
        )
    now = now_us()
    batch_events = [
        Event(floor + i + 1, now, kind, None, msgspec.Raw(msgspec.msgpack.encode(payload)))
        for i, (kind, payload) in enumerate(items)
    ]
    batch, rejections = stored_batch(
        device_id, batch_events, floor=floor, through_seq=floor + len(items), received_us=now
    )
    assert rejections == []
    writer = IngestWriter(engine, Metrics(), commit_events=1000)

    async def scenario() -> None:
        writer.start()
        try:
            await writer.submit(batch)
        finally:
            writer.stop()

    asyncio.run(scenario())


def _findings(engine: sa.Engine, device_id: str) -> dict[str, tuple[str | None, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                vuln_findings.c.vuln_id, vuln_findings.c.fixed_version, vuln_findings.c.resolved_us
            )
            .where(vuln_findings.c.device_id == device_id)
            .order_by(vuln_findings.c.id)
        ).all()
    return {r.vuln_id: (r.fixed_version, r.resolved_us is None) for r in rows}


def test_incremental_job_follows_real_ingest(engine: sa.Engine) -> None:
    import_feed(engine, osv_zip(), source="all.zip", imported_by="t", now_us=now_us())
    base = read_dpkg_status()
    changing = add_device(engine, "changing")
    steady = add_device(engine, "steady")
    store_inventory(engine, changing, with_versions(base, {"binutils": "2.16-1"}))
    store_inventory(engine, steady, base)
    job = VulnJob(engine, owner="replica-a")
    first = job.run_once()
    assert first is not None and first.full and first.devices_changed == 2
    assert _findings(engine, changing)["DEBIAN-CVE-2005-4808"] == ("2.17-1", True)

    # Nothing new: nothing to do.
    idle = job.run_once()
    assert idle is not None and (idle.full, idle.devices_changed) == (False, 0)

    # The PC upgrades binutils (every binary of the source package) and installs a
    # Python package; the agent reports both.
    upgrades: list[tuple[str, Payload]] = [
        (
            "inventory.software_upgraded",
            SoftwareUpgraded(
                manager="dpkg",
                name=p.name,
                architecture=p.architecture,
                from_version="2.16-1",
                to_version=p.version,
                source=p.source,
                source_version=p.source_version,
            ),
        )
        for p in base
        if p.source == "binutils"
    ]
    assert len(upgrades) > 1
    installed = SoftwareInstalled(
        manager="pypi",
        name="requests",
        architecture="",
        version="2.28.1",
        source="requests",
        source_version="2.28.1",
    )
    _ingest(engine, changing, [*upgrades, ("inventory.software_installed", installed)])
    # The other PC only sends activity: its mark moves, nothing is re-matched.
    _ingest(engine, steady, [("agent.started", AgentStarted(version="1.0", pid=1, hostname="s"))])
    steady_before = _findings(engine, steady)
    second = job.run_once()
    assert second is not None and (second.full, second.devices_changed) == (False, 1)
    after = _findings(engine, changing)
    assert after["DEBIAN-CVE-2005-4808"] == ("2.17-1", False)  # resolved, history kept
    assert after["GHSA-j8r2-6x86-q33q"] == ("2.31.0", True)
    assert _findings(engine, steady) == steady_before
    with engine.connect() as conn:
        marks = dict(
            conn.execute(
                sa.select(devices.c.id, devices.c.acked_seq).where(devices.c.id == steady)
            ).all()
        )
        applied = conn.execute(
            sa.select(vuln_device_state.c.applied_seq).where(
                vuln_device_state.c.device_id == steady
            )
        ).scalar_one()
    assert applied == marks[steady]

    # A feed import (even one record) makes the next run a full re-match.
    import_feed(engine, osv_record("USN-8820-1"), source="usn", imported_by="t", now_us=now_us())
    third = job.run_once()
    assert third is not None and third.full
    # KEV changes flags, not matches: no full re-match for it.
    import_feed(engine, KEV.read_bytes(), source="kev", imported_by="t", now_us=now_us())
    fourth = job.run_once()
    assert fourth is not None and not fourth.full


def test_a_second_replica_waits_for_the_lease(engine: sa.Engine) -> None:
    from sekimori.server.store.jobs import acquire_lease

    held = acquire_lease(engine, "vuln_match", "replica-a", now_us=now_us(), lease_us=60_000_000)
    assert held is not None
    assert VulnJob(engine, owner="replica-b").run_once() is None


def _binutils_record(fixed: str | None, *, withdrawn: bool = False) -> bytes:
    import json

    record = json.loads(osv_record("DEBIAN-CVE-2005-4808"))
    record["affected"][0]["ranges"][0]["events"] = [{"introduced": "0"}] + (
        [{"fixed": fixed}] if fixed else []
    )
    if withdrawn:
        record["withdrawn"] = "2026-11-01T00:00:00Z"
    return json.dumps(record).encode()


def test_feed_updates_apply_as_a_difference(engine: sa.Engine) -> None:
    import_feed(engine, osv_zip(), source="all.zip", imported_by="t", now_us=now_us())
    device = add_device(engine, "pc")
    store_inventory(engine, device, read_dpkg_status())
    job = VulnJob(engine, owner="a")
    assert job.run_once() is not None
    assert "DEBIAN-CVE-2005-4808" not in _findings(engine, device)

    def rerun(data: bytes) -> None:
        import_feed(engine, data, source="update", imported_by="t", now_us=now_us())
        result = job.run_once()
        assert result is not None and result.full

    rerun(_binutils_record("2.41-1"))  # the fix moves past the installed 2.40-2
    assert _findings(engine, device)["DEBIAN-CVE-2005-4808"] == ("2.41-1", True)
    with engine.connect() as conn:
        first_id = conn.execute(
            sa.select(vuln_findings.c.id).where(vuln_findings.c.vuln_id == "DEBIAN-CVE-2005-4808")
        ).scalar_one()
    rerun(_binutils_record("2.42-1"))  # the same finding, its fixed version updated
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(vuln_findings.c.id, vuln_findings.c.fixed_version).where(
                vuln_findings.c.vuln_id == "DEBIAN-CVE-2005-4808"
            )
        ).all()
    assert [tuple(r) for r in rows] == [(first_id, "2.42-1")]
    rerun(_binutils_record(None, withdrawn=True))  # withdrawn: resolved
    assert _findings(engine, device)["DEBIAN-CVE-2005-4808"] == ("2.42-1", False)
