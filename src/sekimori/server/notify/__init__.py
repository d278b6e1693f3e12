"""Notifications: tell administrators about an alert by email or webhook.

What it is for: issue 5's "notifications per rule and severity, with rate limits". This
package is self-contained and wired in by the next session:

- The alert engine turns each new or grown (deduplicated) alert into an
  :class:`AlertMessage`.
- At start-up the app factory builds the targets from settings with
  :func:`build_target` (one per configured name, e.g. ``ops-mail``, ``slack``), the
  routes (:class:`Route`) and a :class:`RateLimiter` whose state it loads with
  ``import_state``; then one :class:`Dispatcher`.
- A notification worker (off the event loop: transports block) calls
  ``Dispatcher.send(message, routes)``, records the per-target results, retries
  retryable failures later with backoff, and saves ``export_state()``. Retrying,
  persistence and running safely on several replicas belong to that worker.

Transports keep Healthchecks' pattern: one base class with one required method
(:meth:`Transport.notify`) and one error saying whether a retry can help
(:class:`TransportError`), registered in a fixed table (:data:`TRANSPORTS`).
Webhooks go through an SSRF guard (:mod:`sekimori.server.notify.safe_http`).
"""

from sekimori.server.notify.dispatch import (
    DeliveryResult,
    Dispatcher,
    Failed,
    Route,
    Sent,
    Suppressed,
)
from sekimori.server.notify.email import EmailSettings, EmailTransport
from sekimori.server.notify.errors import (
    AddressRefused,
    NotifyConfigError,
    NotifyError,
    TransportError,
)
from sekimori.server.notify.message import AlertMessage, Severity
from sekimori.server.notify.ratelimit import Admission, BucketKey, RateLimit, RateLimiter
from sekimori.server.notify.registry import TRANSPORTS, build_target
from sekimori.server.notify.transport import Transport
from sekimori.server.notify.webhook import WebhookSettings, WebhookTransport

__all__ = [
    "TRANSPORTS",
    "AddressRefused",
    "Admission",
    "AlertMessage",
    "BucketKey",
    "DeliveryResult",
    "Dispatcher",
    "EmailSettings",
    "EmailTransport",
    "Failed",
    "NotifyConfigError",
    "NotifyError",
    "RateLimit",
    "RateLimiter",
    "Route",
    "Sent",
    "Severity",
    "Suppressed",
    "Transport",
    "TransportError",
    "WebhookSettings",
    "WebhookTransport",
    "build_target",
]
