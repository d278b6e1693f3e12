"""Keeping findings current: the ``vuln_match`` background job.

Every ``[server.vuln] match_seconds`` one replica (the holder of the job's lease):

1. finds the devices whose ``acked_seq`` moved past what the job applied
   (``vuln_device_state.applied_seq``), reads their new inventory events, updates
   ``device_packages`` and — in the same transaction — re-matches just those devices
   (incremental: one device is a few hundred small queries at most);
2. when a new OSV or NVD import exists (the newest import id differs from the one
   kept in the job's state), re-matches the whole fleet (``Evaluator.rematch_all``).

The job is safe on several replicas: the lease decides who runs; work is idempotent
(a crash after step 1 leaves a device's ``applied_seq`` and its findings committed
together; a lost lease in step 2 only repeats the full re-match).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.alerting.known_exploited import raise_known_exploited_alerts
from sekimori.server.alerting.periodic import every
from sekimori.server.store.jobs import acquire_lease, finish_lease, save_job_state
from sekimori.server.store.vuln_feeds import feed_revision
from sekimori.server.store.vuln_matching import (
    DesiredFinding,
    FindingKey,
    advance_applied,
    device_match_keys,
    devices_with_inventory,
    distinct_match_keys,
    pending_devices,
    rematch_all,
    sync_device_findings,
)
from sekimori.server.vuln.inventory import apply_device_inventory
from sekimori.server.vuln.matcher import Matcher

__all__ = ["JOB_NAME", "Evaluator", "RunResult", "VulnJob"]

log = logging.getLogger(__name__)

JOB_NAME = "vuln_match"


def _least(values: list[str | None]) -> str | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _least_int(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class Evaluator:
    """Matching with a cached ``Matcher``, rebuilt when a new feed import exists."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._matcher: Matcher | None = None
        self.last_phases: dict[str, float] = {}

    def matcher(self, conn: sa.Connection | None = None) -> Matcher:
        """The matcher for the newest feed import (built once per import)."""
        if conn is None:
            with self.engine.connect() as own:
                return self.matcher(own)
        revision = feed_revision(conn)
        if self._matcher is None or self._matcher.revision != revision:
            self._matcher = Matcher.load(conn, revision)
        return self._matcher

    def desired(
        self, conn: sa.Connection, device_id: str, matcher: Matcher
    ) -> dict[FindingKey, DesiredFinding]:
        """The findings ``device_id`` should have now (same rules as rematch_all: per
        vulnerability and package, the least installed/fixed version and fix date)."""
        gathered: dict[FindingKey, list[tuple[str, str | None, int | None, str, str]]] = {}
        for eco, package, version in device_match_keys(conn, device_id):
            for hit in matcher.hits(eco, package, version):
                gathered.setdefault((hit.vuln_id, eco, package), []).append(
                    (version, hit.fixed, hit.fixed_us, hit.feed, hit.confidence)
                )
        return {
            key: DesiredFinding(
                installed_version=min(r[0] for r in rows),
                fixed_version=_least([r[1] for r in rows]),
                fix_available_us=_least_int([r[2] for r in rows]),
                feed=min(r[3] for r in rows),
                confidence=min(r[4] for r in rows),
            )
            for key, rows in gathered.items()
        }

    def rematch_device(
        self, conn: sa.Connection, device_id: str, *, now_us: int
    ) -> tuple[int, int]:
        """Re-match one device inside the caller's transaction: (opened, resolved)."""
        matcher = self.matcher(conn)
        return sync_device_findings(
            conn, device_id, self.desired(conn, device_id, matcher), now_us=now_us
        )

    def rematch_all(self, *, now_us: int) -> tuple[int, int]:
        """Re-match every device (one transaction): (opened, resolved). The seconds
        spent matching and writing are kept in ``last_phases`` (logged, benchmarked)."""
        started = time.perf_counter()
        with self.engine.connect() as conn:
            matcher = self.matcher(conn)
            loaded = time.perf_counter()
            keys = distinct_match_keys(conn)
        scanned = time.perf_counter()
        rows = [
            {
                "ecosystem": eco,
                "package": package,
                "version": version,
                "vuln_id": hit.vuln_id,
                "fixed": hit.fixed,
                "fixed_us": hit.fixed_us,
                "feed": hit.feed,
                "confidence": hit.confidence,
            }
            for eco, package, version in keys
            for hit in matcher.hits(eco, package, version)
        ]
        matched = time.perf_counter()
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # Room for the index pages a first run's millions of rows touch, and
                # its GROUP BY sorted in memory; set before the transaction begins.
                conn.exec_driver_sql("PRAGMA temp_store=MEMORY")
                conn.exec_driver_sql("PRAGMA cache_size=-524288")
            try:
                result = rematch_all(conn, rows, now_us=now_us)
                conn.commit()
            finally:
                if sqlite:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA cache_size=-2000")
                    conn.exec_driver_sql("PRAGMA temp_store=DEFAULT")
                    conn.commit()
        self.last_phases = {
            "load_ranges": loaded - started,
            "distinct_versions": scanned - loaded,
            "match": matched - scanned,
            "write_findings": time.perf_counter() - matched,
        }
        return result

    def apply_pending(self, *, now_us: int, rematch: bool) -> list[str]:
        """Apply new inventory events of every device that has some; re-match each
        changed device in the same transaction when ``rematch``. Returns the changed
        devices."""
        with self.engine.connect() as conn:
            pending = pending_devices(conn)
            known = [(d, applied, acked) for d, acked, applied in pending if applied is not None]
            busy = devices_with_inventory(conn, known)
        quiet = [(d, acked) for d, _applied, acked in known if d not in busy]
        if quiet:
            with self.engine.begin() as conn:
                advance_applied(conn, quiet, now_us=now_us)
        changed: list[str] = []
        for device_id, acked_seq, applied in pending:
            if applied is not None and device_id not in busy:
                continue
            with self.engine.begin() as conn:
                if apply_device_inventory(conn, device_id, acked_seq, now_us=now_us):
                    changed.append(device_id)
                    if rematch:
                        self.rematch_device(conn, device_id, now_us=now_us)
        return changed


@dataclass(frozen=True, slots=True)
class RunResult:
    devices_changed: int
    full: bool
    opened: int
    resolved: int


class VulnJob:
    def __init__(
        self,
        engine: sa.Engine,
        *,
        owner: str,
        interval_seconds: float = 60.0,
        clock: Callable[[], int] = now_us,
        first_delay_seconds: float = 20.0,
    ) -> None:
        self.engine = engine
        self.owner = owner
        self.interval_seconds = interval_seconds
        self.clock = clock
        self.first_delay_seconds = first_delay_seconds
        self.evaluator = Evaluator(engine)

    def run_once(self) -> RunResult | None:
        """One pass if this replica gets the lease; None when another one holds it."""
        now = self.clock()
        lease = acquire_lease(
            self.engine,
            JOB_NAME,
            self.owner,
            now_us=now,
            lease_us=max(int(self.interval_seconds * 1_000_000) * 10, 600_000_000),
        )
        if lease is None:
            return None
        try:
            state = json.loads(lease.state) if lease.state else {}
        except ValueError:
            state = {}
        with self.engine.connect() as conn:
            revision = feed_revision(conn)
        full = revision != state.get("revision")
        # A device's own changes are re-matched with it (against the newest feed), so
        # a full re-match after a feed import only applies what the feed changed.
        changed = self.evaluator.apply_pending(now_us=now, rematch=True)
        opened = resolved = 0
        if full:
            opened, resolved = self.evaluator.rematch_all(now_us=now)
            state["revision"] = revision
            save_job_state(self.engine, lease, json.dumps(state))
            log.info("vulnerabilities: full re-match: %d opened, %d resolved", opened, resolved)
        # Issue 8 console (V2): alerts for known-exploited findings, new or newly
        # flagged by a KEV import (alerting/known_exploited.py).
        raise_known_exploited_alerts(self.engine, now_us=now)
        finish_lease(self.engine, lease, finished_us=self.clock())
        return RunResult(len(changed), full, opened, resolved)

    async def run(self, stop: asyncio.Event) -> None:
        await every(
            stop,
            self.interval_seconds,
            self.run_once,
            "vulnerability matching",
            first_delay=self.first_delay_seconds,
        )
