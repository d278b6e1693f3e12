"""The errors of the notification package.

Exception tree::

    NotifyError                  anything this package raises on purpose
    ├── NotifyConfigError        settings, routes or an alert message are invalid; the
    │                            message names the field (raised when building, never
    │                            while sending)
    └── TransportError           one send failed; ``permanent`` says whether a retry can
        │                        help (Healthchecks' ``TransportError(permanent=...)``)
        └── AddressRefused       a webhook target resolved to an address the SSRF rule
                                 forbids (always permanent: the administrator must allow
                                 it or change the URL)
"""

from __future__ import annotations

__all__ = ["AddressRefused", "NotifyConfigError", "NotifyError", "TransportError"]


class NotifyError(Exception):
    """Base of every error this package raises on purpose."""


class NotifyConfigError(NotifyError, ValueError):
    """Invalid settings, route or message; the text names the field and the problem."""


class TransportError(NotifyError):
    """A notification could not be delivered.

    ``reason`` is short, safe to show in the console and to store (it never contains a
    password). ``permanent`` is True when retrying the same message to the same target
    cannot help (a refused recipient, a failed login, a 404, a forbidden address); False
    when it may (a timeout, a refused connection, a 4xx SMTP reply, an HTTP 5xx or 429).
    """

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, permanent={self.permanent})"


class AddressRefused(TransportError):
    """The target host resolved to a private, loopback or otherwise internal address."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, permanent=True)
