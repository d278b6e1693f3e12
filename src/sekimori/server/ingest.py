"""The ingest writer: one thread that commits batches for all connections.

Connections hand in batches and await a future; the writer gathers whatever is
queued (up to ``commit_events`` events) into one transaction (group commit), commits,
and only then resolves the futures, so an acknowledgement always means "committed".
If a group commit fails, its batches are retried one by one, so one bad batch cannot
hold back the others; the failing one gets StoreUnavailable.

The alert rules run in the same transaction (``sekimori.server.alerting.evaluator``):
an event and the alert it raises commit together or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.alerting.evaluator import IngestRules
from sekimori.server.blobs import BlobStore
from sekimori.server.metrics import Metrics
from sekimori.server.store.events import StoredBatch, write_batches

__all__ = ["IngestWriter", "StoreUnavailable"]

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The store could not commit a batch; retrying later can help."""


@dataclass(slots=True)
class _Job:
    batch: StoredBatch
    future: asyncio.Future[StoredBatch]
    loop: asyncio.AbstractEventLoop
    received: float


def _resolve(job: _Job, error: BaseException | None) -> None:
    def settle() -> None:
        if job.future.done():
            return  # the connection went away; the agent will resend and dedup
        if error is None:
            job.future.set_result(job.batch)
        else:
            job.future.set_exception(error)

    job.loop.call_soon_threadsafe(settle)


class IngestWriter:
    def __init__(
        self,
        engine: sa.Engine,
        metrics: Metrics,
        *,
        commit_events: int,
        rules: IngestRules | None = None,
        blobs: BlobStore | None = None,
    ) -> None:
        self._engine = engine
        self._blobs = blobs
        self.rules = rules if rules is not None else IngestRules()
        self._metrics = metrics
        self._commit_events = commit_events
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._queued_events = 0
        self._count_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def submit(self, batch: StoredBatch) -> asyncio.Future[StoredBatch]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredBatch] = loop.create_future()
        self._adjust_queued(len(batch.rows))
        self._queue.put(_Job(batch, future, loop, time.perf_counter()))
        return future

    def _adjust_queued(self, delta: int) -> None:
        with self._count_lock:
            self._queued_events += delta
            self._metrics.ingest_queue_events.set(self._queued_events)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self.rules.poll_seconds)
            except queue.Empty:
                # Idle: rebuild the rules now if they changed, not on the next batch.
                self._refresh_rules()
                continue
            if first is None:
                break
            jobs = [first]
            events = len(first.batch.rows)
            while events < self._commit_events:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                events += len(job.batch.rows)
            self._commit(jobs)
            self._adjust_queued(-events)

    def _refresh_rules(self) -> None:
        try:
            with self._engine.connect() as conn:
                self.rules.refresh(conn)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not read the rule configuration: %s", exc)

    def _commit(self, jobs: list[_Job]) -> None:
        try:
            self._write([j.batch for j in jobs])
        # Broad on purpose: the hot path talks to the DB driver directly, so its own
        # exception types (sqlite3.Error, psycopg.Error) arrive unwrapped, and this
        # thread must outlive any batch: a dead writer would stall every agent.
        except Exception as exc:  # noqa: BLE001
            # Their threshold windows counted events that were not stored.
            self.rules.discard([j.batch.device_id for j in jobs])
            if len(jobs) == 1:
                log.error("store refused a batch from device %s: %s", jobs[0].batch.device_id, exc)
                _resolve(jobs[0], StoreUnavailable("the store could not commit this batch"))
                return
            log.warning(
                "group commit of %d batches failed (%s); retrying one by one", len(jobs), exc
            )
            for job in jobs:
                self._commit([job])
            return
        done = time.perf_counter()
        for job in jobs:
            self._metrics.batch_latency.observe(done - job.received)
            _resolve(job, None)

    def _write(self, batches: list[StoredBatch]) -> None:
        # Screen frames' pictures first (content addressed: a retry rewrites nothing;
        # a blob whose transaction then fails is an orphan, collected later).
        for batch in batches:
            for frame in batch.frames:
                if self._blobs is None:
                    raise RuntimeError("screen frames received but no blob store configured")
                self._blobs.put(frame.payload.image)
        with self._engine.begin() as conn:
            floors = write_batches(conn, batches)
            alerts = self.rules.evaluate(conn, batches, floors, now_us=now_us())
        if alerts is not None:
            self._metrics.alerts_raised.inc(len(alerts.created))
            by_device = {b.device_id: b for b in batches}
            for alert_id, device_id, rule_id in alerts.opened:
                opened_on = by_device.get(device_id)
                if opened_on is not None:
                    opened_on.opened_alerts.append((alert_id, rule_id))
        stored = sum(b.inserted for b in batches)
        received = sum(len(b.rows) for b in batches)
        self._metrics.events_ingested.inc(stored)
        self._metrics.events_duplicate.inc(received - stored)
        self._metrics.events_quarantined.inc(sum(len(b.quarantined) for b in batches))
