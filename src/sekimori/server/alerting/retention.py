"""The retention purge, scheduled: every ``retention_purge_seconds`` one replica
deletes the events past their group's retention (``store.policies.purge_expired``,
chunked and audited).

The ``retention_purge`` job lease keeps replicas from purging at the same time and
records when the last purge finished, so a restart (or ten replicas starting) does
not purge again before the interval has passed; the first check comes shortly after
start. The purge is idempotent, so a lease that expires mid-purge (a purge longer
than the interval) costs only duplicate work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.alerting.periodic import every
from sekimori.server.blobs import BlobStore
from sekimori.server.store.jobs import acquire_lease, finish_lease
from sekimori.server.store.policies import purge_expired, retention_by_group
from sekimori.server.store.screen_frames import collect_orphans, purge_expired_frames
from sekimori.settings import ServerSettings

__all__ = ["FIRST_CHECK_SECONDS", "JOB_NAME", "RetentionPurge"]

log = logging.getLogger(__name__)

JOB_NAME = "retention_purge"
# The first check after start: late enough not to slow start-up.
FIRST_CHECK_SECONDS = 30.0
# How often a replica looks whether the purge is due (at most the interval).
_CHECK_SECONDS = 60.0


class RetentionPurge:
    def __init__(
        self,
        engine: sa.Engine,
        server: ServerSettings,
        *,
        owner: str,
        clock: Callable[[], int] = now_us,
        first_check_seconds: float = FIRST_CHECK_SECONDS,
        blobs: BlobStore | None = None,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.interval_us = int(server.retention_purge_seconds * 1_000_000)
        self.owner = owner
        self.clock = clock
        self.first_check_seconds = first_check_seconds

    def run_once(self) -> dict[tuple[int, str], int] | None:
        """Purge if due and this replica gets the lease: the rows deleted per (group,
        kind domain); None when not due or another replica purges."""
        now = self.clock()
        lease = acquire_lease(
            self.engine,
            JOB_NAME,
            self.owner,
            now_us=now,
            lease_us=max(self.interval_us, 600_000_000),
            due_before_us=now - self.interval_us,
        )
        if lease is None:
            return None
        retention = retention_by_group(self.engine)
        deleted = purge_expired(self.engine, retention, now)
        if self.blobs is not None:  # screen frames: their rows and pictures (issue 6)
            purge_expired_frames(self.engine, retention, now, self.blobs)
            collect_orphans(self.engine, self.blobs)
        finish_lease(self.engine, lease, finished_us=self.clock())
        if deleted:
            log.info("retention purge: %d events deleted", sum(deleted.values()))
        return deleted

    async def run(self, stop: asyncio.Event) -> None:
        check = min(_CHECK_SECONDS, self.interval_us / 1_000_000)
        await every(
            stop, check, self.run_once, "retention purge", first_delay=self.first_check_seconds
        )
