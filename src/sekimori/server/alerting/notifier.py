"""The notification worker: sends each new alert to its targets, once, with retries.

Every ``poll_seconds`` a replica reads the due alerts; when there are some it takes the
``notify`` job lease (:mod:`sekimori.server.store.jobs`; an idle server writes
nothing). Only the holder sends, so the rate limiter's buckets have one writer: they
are loaded from the job's state and saved back after each alert, and so survive
restarts and moves between replicas (a crash-looping server cannot reset its limits
and flood a mailbox). The lease is renewed before each alert and expires on its own
if the holder dies.

For each due alert (``store.alert_outbox.due_alerts``) the worker:

1. claims it with a compare-and-set on ``notify_after_us`` (now + ``claim_seconds``):
   even if two replicas believed they held the lease, only one wins the alert; and a
   worker that dies mid-send leaves the alert due again when the claim runs out;
2. picks the targets of the routes matching its rule and severity — none: the alert
   is marked notified;
3. sends through the :class:`Dispatcher` (rate limited; blocking I/O, so the whole
   pass runs in a worker thread, never on the event loop);
4. sent, suppressed by the rate limit, or failed for good → that target is done
   (a permanent failure is written in the alert's history); a retryable failure →
   the alert is tried again after ``retry_initial_seconds`` doubling up to
   ``retry_max_seconds``, for the targets still missing only (kept in the job state,
   so a target that got the mail does not get it twice); after ``max_attempts`` sends
   the worker gives up, marks the alert notified and says so in its history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.alerting.targets import build_limiter, build_targets, targets_for
from sekimori.server.notify import (
    AlertMessage,
    Dispatcher,
    Failed,
    NotifyConfigError,
    Route,
    Sent,
    Severity,
    Suppressed,
    Transport,
)
from sekimori.server.store.alert_outbox import (
    DueAlert,
    claim_alert,
    due_alerts,
    mark_notified,
    schedule_retry,
)
from sekimori.server.store.jobs import Lease, acquire_lease, save_job_state
from sekimori.settings import ServerSettings

__all__ = ["JOB_NAME", "Notifier", "console_base_url", "replica_id"]

log = logging.getLogger(__name__)

JOB_NAME = "notify"
# Alerts read per pass; the loop goes on at once while passes come back full.
BATCH = 100
_US = 1_000_000


def replica_id() -> str:
    """Who holds a lease: host, process and a random part (two servers in one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def console_base_url(server: ServerSettings) -> str:
    """The console's address for links: ``notify.console_url``, else built from the
    console's host and port (the machine's name when it listens on every address)."""
    if server.notify.console_url:
        return server.notify.console_url.rstrip("/")
    from sekimori.server.console.app import (  # noqa: PLC0415 - heavy import
        ConsoleTLSRefused,
        console_uses_tls,
    )

    try:
        scheme = "https" if console_uses_tls(server) else "http"
    except ConsoleTLSRefused:
        scheme = "https"  # the console refuses to start itself; it says why
    host = server.console_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{server.console_port}"


class _State(msgspec.Struct, kw_only=True):
    """The job state: rate-limit buckets, and per alert in retry the targets done."""

    limiter: list[Any] = msgspec.field(default_factory=list)
    done: dict[str, list[str]] = msgspec.field(default_factory=dict)


class Notifier:
    """One replica's notification worker. ``run_once`` is blocking (call it in a
    thread); ``run`` loops it off the event loop until ``stop`` is set.

    ``transports`` replaces the targets built from settings (tests, or a fake)."""

    def __init__(
        self,
        engine: sa.Engine,
        server: ServerSettings,
        *,
        transports: Mapping[str, Transport] | None = None,
        clock: Callable[[], int] = now_us,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        self.settings = server.notify
        self.console_url = console_base_url(server)
        self.clock = clock
        self.owner = owner or replica_id()
        built = build_targets(self.settings.targets) if transports is None else transports
        self.limiter = build_limiter(self.settings, clock=lambda: self.clock() / _US)
        self.dispatcher = Dispatcher(built, self.limiter)
        # The lease outlives a pass of sends; renewed before each alert.
        self.lease_us = int(max(self.settings.claim_seconds, 6 * self.settings.poll_seconds) * _US)
        self._lease: Lease | None = None
        self._state = _State()

    # -- the loop -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            handled = 0
            try:
                handled = await asyncio.to_thread(self.run_once)
            except Exception:
                # The store briefly unreachable, or a bug on one alert (claimed first,
                # so it is not picked again at once), must not end the worker.
                log.exception("notification pass failed; trying again")
            if handled >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)

    def run_once(self) -> int:
        """One pass: take the lease, handle up to ``BATCH`` due alerts. Returns how many
        this worker claimed and handled (0 when another replica holds the lease)."""
        # Read first: an idle server writes nothing (the lease is taken only for work).
        due = due_alerts(self.engine, now_us=self.clock(), limit=BATCH)
        handled = 0
        for alert in due:
            if not self._renew():
                break  # another replica holds the lease: it sends these
            handled += self._handle(alert)
        return handled

    def _renew(self) -> bool:
        now = self.clock()
        # Our lease still running: nobody else can have written the state since.
        kept = self._lease is not None and self._lease.until_us > now
        lease = acquire_lease(self.engine, JOB_NAME, self.owner, now_us=now, lease_us=self.lease_us)
        if lease is None:
            self._lease = None
            return False
        if not kept:
            # Newly taken: the buckets and partial deliveries are the last holder's.
            self._state = self._decode(lease.state)
            try:
                self.limiter.import_state(self._state.limiter)
            except NotifyConfigError:
                log.warning("stored rate-limit state unreadable; starting with full buckets")
                self.limiter.import_state([])
        self._lease = lease
        return True

    @staticmethod
    def _decode(raw: str) -> _State:
        if not raw:
            return _State()
        try:
            return msgspec.json.decode(raw, type=_State)
        except msgspec.DecodeError:
            log.warning("stored notifier state unreadable; starting afresh")
            return _State()

    def _save(self) -> None:
        if self._lease is None:
            return
        self._state.limiter = self.limiter.export_state()
        saved = msgspec.json.encode(self._state).decode("utf-8")
        if not save_job_state(self.engine, self._lease, saved):
            self._lease = None

    # -- one alert --------------------------------------------------------------------

    def _handle(self, alert: DueAlert) -> bool:
        """Claim and notify ``alert``; False when another worker claimed it first."""
        now = self.clock()
        if not claim_alert(
            self.engine, alert, until_us=now + int(self.settings.claim_seconds * _US)
        ):
            return False
        try:
            message = self.message(alert)
        except NotifyConfigError as exc:
            # A row no message can be made of (it was claimed first, so it cannot
            # crash-loop the worker): say so on the alert and move on.
            log.error("alert %d: cannot build its notification: %s", alert.id, exc)
            self._finish(alert, alert.notify_attempts, [f"No notification sent: {exc}"])
            return True
        done = set(self._state.done.get(str(alert.id), []))
        targets = [
            t
            for t in targets_for(self.settings.routes, alert.rule_id, message.severity)
            if t not in done
        ]
        if not targets:
            self._finish(alert, alert.notify_attempts, [])
            return True
        route = Route(rule=alert.rule_id, min_severity=Severity.INFO, targets=tuple(targets))
        results = self.dispatcher.send(message, [route])
        attempts = alert.notify_attempts + 1
        notes: list[str] = []
        retry: list[Failed] = []
        for target, result in results.items():
            if isinstance(result, Sent | Suppressed):
                done.add(target)
            elif result.permanent:
                done.add(target)
                log.warning(
                    "alert %d: notification to %s failed: %s", alert.id, target, result.reason
                )
                notes.append(f"Notification to {target} failed: {result.reason}")
            else:
                retry.append(result)
        if not retry:
            self._finish(alert, attempts, notes)
            return True
        if attempts >= self.settings.max_attempts:
            for failed in retry:
                log.error(
                    "alert %d: giving up on %s after %d attempts: %s",
                    alert.id,
                    failed.target,
                    attempts,
                    failed.reason,
                )
                notes.append(
                    f"Notification to {failed.target} failed after {attempts} attempts: "
                    f"{failed.reason}"
                )
            self._finish(alert, attempts, notes)
            return True
        delay = min(
            self.settings.retry_max_seconds,
            self.settings.retry_initial_seconds * 2 ** (attempts - 1),
        )
        log.info(
            "alert %d: notification to %s failed (%s); retry in %.0f s",
            alert.id,
            ", ".join(f.target for f in retry),
            "; ".join(f.reason for f in retry),
            delay,
        )
        self._state.done[str(alert.id)] = sorted(done)
        self._save()
        now = self.clock()
        schedule_retry(
            self.engine,
            alert.id,
            now_us=now,
            after_us=now + int(delay * _US),
            attempts=attempts,
            notes=notes,
        )
        return True

    def _finish(self, alert: DueAlert, attempts: int, notes: list[str]) -> None:
        self._state.done.pop(str(alert.id), None)
        self._save()
        mark_notified(self.engine, alert.id, now_us=self.clock(), attempts=attempts, notes=notes)

    def message(self, alert: DueAlert) -> AlertMessage:
        """The notification for ``alert``."""
        try:
            severity = Severity(alert.severity)
        except ValueError:
            severity = Severity.MEDIUM
        return AlertMessage(
            alert_id=alert.id,
            rule_id=alert.rule_id,
            rule_title=alert.title or alert.rule_id,
            severity=severity,
            hostname=alert.hostname,
            group=alert.group,
            first_seen_us=alert.first_us,
            last_seen_us=max(alert.last_us, alert.first_us),
            count=max(alert.count, 1),
            summary=(alert.summary,) if alert.summary else (),
            console_url=f"{self.console_url}/alerts/{alert.id}",
            locale=self.settings.locale,
        )
