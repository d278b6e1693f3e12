"""Runs every enabled collector in its own thread, reports health, restarts failures.

Health is reported as ``agent.collector_health`` events, so the server (and the
administrator) learn that a collector failed and why, not just that data stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from sekimori.agent.backoff import Backoff
from sekimori.agent.collectors.base import Collector, CollectorError, CollectorSettings, Sink
from sekimori.agent.outbox import Outbox
from sekimori.protocol.events import CollectorHealth

__all__ = ["CollectorConfigError", "Supervisor", "is_enabled"]

log = logging.getLogger(__name__)

# A collector that ran this long before failing starts again from the shortest delay.
_HEALTHY_RUN_SECONDS = 60.0


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


class Supervisor:
    def __init__(
        self,
        outbox: Outbox,
        collectors: Mapping[str, type[Collector]],
        settings: Mapping[str, Mapping[str, Any]],
        *,
        restart_initial_seconds: float = 1.0,
        restart_max_seconds: float = 300.0,
    ) -> None:
        unknown = set(settings) - set(collectors)
        if unknown:
            raise CollectorConfigError(f"unknown collectors in settings: {sorted(unknown)}")
        self._outbox = outbox
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._restart = (restart_initial_seconds, restart_max_seconds)
        self._plan: list[tuple[type[Collector], CollectorSettings]] = []
        self._disabled: list[str] = []
        for name in collectors:
            values = settings.get(name, {})
            if not is_enabled(name, values) and set(values) <= {"enabled"}:
                # Switched off and nothing else configured: its module is not even
                # imported (see registry), so it costs no memory.
                self._disabled.append(name)
                continue
            cls = collectors[name]
            try:
                conf = msgspec.convert(dict(values), cls.settings_type, strict=False)
            except msgspec.ValidationError as exc:
                raise CollectorConfigError(f"collector {name!r}: {exc}") from None
            if conf.enabled:
                self._plan.append((cls, conf))
            else:
                self._disabled.append(name)

    @property
    def enabled(self) -> list[str]:
        return [cls.name for cls, _ in self._plan]

    def start(self) -> None:
        for name in self._disabled:
            _health(self._outbox, name, "disabled", "disabled by settings")
        for cls, conf in self._plan:
            thread = threading.Thread(
                target=self._supervise, args=(cls, conf), name=f"collector-{cls.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", thread.name, timeout)

    def _supervise(self, cls: type[Collector], conf: CollectorSettings) -> None:
        backoff = Backoff(*self._restart)
        restarts = 0
        while not self._stop.is_set():
            _health(self._outbox, cls.name, "running", restarts=restarts)
            started = time.monotonic()
            try:
                cls(conf, Sink(self._outbox, cls.name)).run(self._stop)
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
            self._stop.wait(backoff.next_delay())
