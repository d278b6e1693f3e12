"""Runs every enabled collector in its own thread, reports health, restarts failures.

Health is reported as ``agent.collector_health`` events, so the server (and the
administrator) learn that a collector failed and why, not just that data stopped.

``reconfigure`` takes new settings (a collection policy merged over the local ones,
see ``sekimori.agent.policy``): it validates all of them first, so settings the
collectors refuse change nothing, then stops and starts only the collectors whose
settings differ. Each collector has its own stop event for that.

A ``gate`` (``time_us -> bool``) decides per event whether a collector's events are
recorded at all (working-hours-only collection). Events it refuses are dropped before
they reach the outbox; a cursor saved with them is still saved, so what happened
outside the hours is never sent later either. The agent's own events (health, policy)
are not gated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from sekimori.agent.backoff import Backoff
from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings, Sink
from sekimori.agent.outbox import Outbox, PendingEvent
from sekimori.clock import now_us
from sekimori.protocol.events import CollectorHealth, Payload

__all__ = ["CollectorConfigError", "Gate", "Supervisor", "is_enabled"]

log = logging.getLogger(__name__)

# A collector that ran this long before failing starts again from the shortest delay.
_HEALTHY_RUN_SECONDS = 60.0
# How long a collector being reconfigured may take to return from run() (its contract
# says about a second); past that it is reported and the new one starts regardless.
_RESTART_JOIN_SECONDS = 10.0

Gate = Callable[[int], bool]
"""Whether an event that happened at ``time_us`` (UTC microseconds) may be recorded."""


class CollectorConfigError(Exception):
    """A collector's settings are invalid; the message names the collector and key."""


def _health(
    outbox: Outbox,
    name: str,
    status: Literal["running", "failed", "disabled", "unavailable"],
    reason: str = "",
    restarts: int = 0,
) -> None:
    outbox.append(
        "agent.collector_health",
        CollectorHealth(collector=name, status=status, reason=reason[:1000], restarts=restarts),
    )


def is_enabled(name: str, values: Mapping[str, Any]) -> bool:
    """Whether a collector's settings leave it enabled (the default), read without
    its settings class; raises CollectorConfigError if ``enabled`` is not a boolean."""
    try:
        return msgspec.convert(values.get("enabled", True), bool, strict=False)
    except msgspec.ValidationError as exc:
        raise CollectorConfigError(f"collector {name!r}: {exc} - at `$.enabled`") from None


class _GatedSink(Sink):
    """A sink that drops the events its gate refuses (see the module docstring)."""

    def __init__(self, outbox: Outbox, name: str, gate: Gate) -> None:
        super().__init__(outbox, name)
        self._gate = gate

    def emit(
        self,
        kind: str,
        payload: Payload,
        *,
        os_user: str | None = None,
        time_us: int | None = None,
    ) -> None:
        if self._gate(time_us if time_us is not None else now_us()):
            super().emit(kind, payload, os_user=os_user, time_us=time_us)

    def emit_many(self, events: Sequence[PendingEvent], *, cursor: bytes | None = None) -> None:
        now = now_us()
        kept = [e for e in events if self._gate(e.time_us if e.time_us is not None else now)]
        # With nothing kept the outbox still saves the cursor (and appends nothing).
        super().emit_many(kept, cursor=cursor)


_Plan = dict[str, tuple[type[Collector], CollectorSettings] | None]


@dataclass(slots=True)
class _Running:
    thread: threading.Thread
    stop: threading.Event


class Supervisor:
    def __init__(
        self,
        outbox: Outbox,
        collectors: Mapping[str, type[Collector]],
        settings: Mapping[str, Mapping[str, Any]],
        *,
        gate: Gate | None = None,
        restart_initial_seconds: float = 1.0,
        restart_max_seconds: float = 300.0,
    ) -> None:
        self._outbox = outbox
        self._collectors = collectors
        self._gate = gate
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        # The collector objects running now, by name (for requests from the server,
        # e.g. a screenshot burst when a rule fired).
        self._instances: dict[str, Collector] = {}
        self._restart = (restart_initial_seconds, restart_max_seconds)
        self._plan = self._make_plan(settings)

    def _make_plan(self, settings: Mapping[str, Mapping[str, Any]]) -> _Plan:
        """Each collector's validated settings, or None when it is disabled. Raises
        CollectorConfigError (naming the collector and key) for any invalid section."""
        unknown = set(settings) - set(self._collectors)
        if unknown:
            raise CollectorConfigError(f"unknown collectors in settings: {sorted(unknown)}")
        plan: _Plan = {}
        for name in self._collectors:
            values = settings.get(name, {})
            if not is_enabled(name, values) and set(values) <= {"enabled"}:
                # Switched off and nothing else configured: its module is not even
                # imported (see registry), so it costs no memory.
                plan[name] = None
                continue
            cls = self._collectors[name]
            try:
                conf = msgspec.convert(dict(values), cls.settings_type, strict=False)
            except msgspec.ValidationError as exc:
                raise CollectorConfigError(f"collector {name!r}: {exc}") from None
            plan[name] = (cls, conf) if conf.enabled else None
        return plan

    @property
    def enabled(self) -> list[str]:
        return [name for name, entry in self._plan.items() if entry is not None]

    def start(self) -> None:
        with self._lock:
            for name, entry in self._plan.items():
                if entry is None:
                    _health(self._outbox, name, "disabled", "disabled by settings")
                else:
                    self._launch(name, *entry)

    def reconfigure(
        self, settings: Mapping[str, Mapping[str, Any]], *, reason: str = "disabled by policy"
    ) -> list[str]:
        """Run the collectors as ``settings`` say, restarting only those whose
        validated settings changed; returns their names. Raises CollectorConfigError
        before changing anything if any section is invalid."""
        plan = self._make_plan(settings)
        with self._lock:
            if self._stop.is_set():
                return []
            changed = [name for name in plan if plan[name] != self._plan.get(name)]
            for name in changed:
                self._halt(name)
            for name in changed:
                entry = plan[name]
                if entry is None:
                    _health(self._outbox, name, "disabled", reason)
                else:
                    self._launch(name, *entry)
            self._plan = plan
        if changed:
            log.info("collectors reconfigured: %s", ", ".join(changed))
        return changed

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stop.set()
            running = list(self._running.values())
            for entry in running:
                entry.stop.set()
        for entry in running:
            entry.thread.join(timeout)
            if entry.thread.is_alive():
                log.warning("%s did not stop within %.0f s", entry.thread.name, timeout)

    def restart(self, name: str) -> bool:
        """Stop and start collector ``name`` now (a remote ``refresh_inventory``: the
        inventory collector's first round is a full one). False when it is not
        enabled. Blocks while the collector stops: call it from a thread."""
        with self._lock:
            entry = self._plan.get(name)
            if entry is None or self._stop.is_set():
                return False
            self._halt(name)
            self._launch(name, *entry)
        return True

    def running(self, name: str) -> Collector | None:
        """The collector ``name`` if it is running now."""
        return self._instances.get(name)

    def _launch(self, name: str, cls: type[Collector], conf: CollectorSettings) -> None:
        stop = threading.Event()
        thread = threading.Thread(
            target=self._supervise,
            args=(cls, conf, stop),
            name=f"collector-{cls.name}",
            daemon=True,
        )
        self._running[name] = _Running(thread, stop)
        thread.start()

    def _halt(self, name: str) -> None:
        entry = self._running.pop(name, None)
        if entry is None:
            return
        entry.stop.set()
        entry.thread.join(_RESTART_JOIN_SECONDS)
        if entry.thread.is_alive():
            log.warning("%s did not stop within %.0f s", entry.thread.name, _RESTART_JOIN_SECONDS)

    def _sink(self, name: str) -> Sink:
        if self._gate is None:
            return Sink(self._outbox, name)
        return _GatedSink(self._outbox, name, self._gate)

    def _supervise(
        self, cls: type[Collector], conf: CollectorSettings, stop: threading.Event
    ) -> None:
        backoff = Backoff(*self._restart)
        restarts = 0
        while not stop.is_set():
            _health(self._outbox, cls.name, "running", restarts=restarts)
            started = time.monotonic()
            try:
                instance = cls(conf, self._sink(cls.name))
                self._instances[cls.name] = instance
                try:
                    instance.run(stop)
                finally:
                    if self._instances.get(cls.name) is instance:
                        del self._instances[cls.name]
                return
            except CollectorError as exc:
                if exc.permanent:
                    log.warning("collector %s unavailable: %s", cls.name, exc)
                    _health(self._outbox, cls.name, "unavailable", str(exc), restarts)
                    return
                reason = str(exc)
            # Broad on purpose: a collector's bug must not take the agent down; it is
            # reported with its reason and the collector restarted.
            except Exception as exc:
                reason = f"{exc.__class__.__name__}: {exc}"
                log.exception("collector %s failed", cls.name)
            restarts += 1
            _health(self._outbox, cls.name, "failed", reason, restarts)
            if time.monotonic() - started > _HEALTHY_RUN_SECONDS:
                # It worked for a while (say, until the user logged out): come back
                # quickly next time instead of after the longest backoff.
                backoff.reset()
            stop.wait(backoff.next_delay())
