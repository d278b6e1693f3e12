"""From ``[server.notify]`` settings to the notification package's parts: transports,
the rate limiter, and which targets an alert goes to (rule id globs, minimum severity).

``settings.load_settings`` calls :func:`build_targets` to validate every target at
start (a bad address, URL, network or unreadable password file is a SettingsError
naming the target); the notifier calls it again to get the transports.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from sekimori.server.notify import (
    NotifyConfigError,
    RateLimit,
    RateLimiter,
    Severity,
    Transport,
    build_target,
)
from sekimori.settings import NotifyRouteSettings, NotifySettings, NotifyTarget

__all__ = ["build_limiter", "build_targets", "targets_for"]

# Keys of a target's settings that are ours, not its transport's.
_OWN_KEYS = ("kind", "rate_limit")


def build_targets(targets: Mapping[str, NotifyTarget]) -> dict[str, Transport]:
    """One transport per configured target. Raises NotifyConfigError (a ValueError)
    naming ``server.notify.targets.<name>`` and the field."""
    built: dict[str, Transport] = {}
    for name, target in targets.items():
        data: dict[str, Any] = msgspec.to_builtins(target)
        kind = str(data["kind"])
        for key in _OWN_KEYS:
            data.pop(key, None)
        if not data.get("password"):
            data.pop("password", None)
        try:
            built[name] = build_target(name, kind, data)
        except NotifyConfigError as exc:
            raise NotifyConfigError(f"server.notify.targets.{name}: {exc}") from exc
    return built


def build_limiter(settings: NotifySettings, clock: Callable[[], float]) -> RateLimiter:
    """The token buckets: the section's default, overridden per target."""

    def limit(per_hour: float, burst: int) -> RateLimit:
        return RateLimit(per_hour=per_hour, burst=burst)

    per_target = {
        name: limit(target.rate_limit.per_hour, target.rate_limit.burst)
        for name, target in settings.targets.items()
        if target.rate_limit is not None
    }
    default = limit(settings.rate_limit.per_hour, settings.rate_limit.burst)
    return RateLimiter(default, per_target, clock=clock)


def _route_matches(route: NotifyRouteSettings, rule_id: str, severity: Severity) -> bool:
    if severity.rank < Severity(route.min_severity).rank:
        return False
    # fnmatchcase: rule ids are case-sensitive, on every platform.
    return any(fnmatch.fnmatchcase(rule_id, pattern) for pattern in route.rules)


def targets_for(
    routes: Sequence[NotifyRouteSettings], rule_id: str, severity: Severity
) -> list[str]:
    """The targets of every route matching the alert, each once, in route order."""
    chosen: dict[str, None] = {}
    for route in routes:
        if _route_matches(route, rule_id, severity):
            chosen.update(dict.fromkeys(route.targets))
    return list(chosen)
