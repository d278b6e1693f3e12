"""Dispatch: which transports an alert goes to, through the rate limiter, with results.

``Dispatcher(transports, limiter).send(message, routes)`` picks the targets whose route
matches the alert's rule and whose minimum severity it reaches, asks the limiter, calls
each transport once, and returns one result per target: :class:`Sent`,
:class:`Suppressed` or :class:`Failed` (with ``permanent``). It does not retry and does
not persist anything: the caller (the next session's notification worker) stores the
results, retries retryable failures later, and saves the limiter's state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from sekimori.server.notify.errors import NotifyConfigError, TransportError
from sekimori.server.notify.message import AlertMessage, Severity
from sekimori.server.notify.ratelimit import Admission, BucketKey, RateLimiter
from sekimori.server.notify.transport import Transport

__all__ = ["DeliveryResult", "Dispatcher", "Failed", "Route", "Sent", "Suppressed"]

log = logging.getLogger(__name__)

ANY_RULE = "*"


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Send alerts of ``rule`` (``*`` for every rule) at ``min_severity`` or above to the
    named ``targets``."""

    rule: str = ANY_RULE
    min_severity: Severity = Severity.INFO
    targets: tuple[str, ...]

    def matches(self, message: AlertMessage) -> bool:
        return self.rule in (ANY_RULE, message.rule_id) and (
            message.severity.rank >= self.min_severity.rank
        )


@dataclass(frozen=True)
class Sent:
    target: str
    suppressed_before: int = 0  # held-back notifications this one mentioned


@dataclass(frozen=True)
class Suppressed:
    target: str
    suppressed: int  # held back so far for this target, rule and severity


@dataclass(frozen=True)
class Failed:
    target: str
    reason: str
    permanent: bool


DeliveryResult = Sent | Suppressed | Failed


class Dispatcher:
    def __init__(self, transports: Mapping[str, Transport], limiter: RateLimiter | None) -> None:
        self.transports = dict(transports)
        self.limiter = limiter

    def check_routes(self, routes: Iterable[Route]) -> None:
        """Raise NotifyConfigError for a route naming a target that does not exist."""
        for index, route in enumerate(routes):
            for target in route.targets:
                if target not in self.transports:
                    raise NotifyConfigError(f"routes[{index}].targets: no target {target!r}")

    def targets_for(self, message: AlertMessage, routes: Iterable[Route]) -> list[str]:
        """The matching targets, each once, in route order."""
        chosen: dict[str, None] = {}
        for route in routes:
            if route.matches(message):
                chosen.update(dict.fromkeys(route.targets))
        return list(chosen)

    def send(self, message: AlertMessage, routes: Iterable[Route]) -> dict[str, DeliveryResult]:
        """Deliver ``message`` to every matching target; never raises TransportError."""
        results: dict[str, DeliveryResult] = {}
        for target in self.targets_for(message, routes):
            results[target] = self._send_one(target, message)
        return results

    def _send_one(self, target: str, message: AlertMessage) -> DeliveryResult:
        transport = self.transports.get(target)
        if transport is None:
            return Failed(target, f"no target named {target!r}", permanent=True)
        key = BucketKey(target, message.rule_id, message.severity.value)
        admission = self.limiter.acquire(key) if self.limiter else None
        if admission is not None and not admission.allowed:
            return Suppressed(target, admission.suppressed)
        held = admission.suppressed if admission else 0
        outgoing = msgspec.structs.replace(message, suppressed_before=held) if held else message
        try:
            transport.notify(outgoing)
        except TransportError as exc:
            self._refund(key, admission)
            return Failed(target, exc.reason, exc.permanent)
        except Exception as exc:
            # A bug in one transport must not stop the others; it is logged with its trace.
            log.exception("notification transport %s crashed", target)
            self._refund(key, admission)
            return Failed(target, f"internal error: {type(exc).__name__}", permanent=False)
        return Sent(target, held)

    def _refund(self, key: BucketKey, admission: Admission | None) -> None:
        # The message did not go out: its token and the held-back count come back.
        if self.limiter is not None and admission is not None:
            self.limiter.refund(key, admission)
