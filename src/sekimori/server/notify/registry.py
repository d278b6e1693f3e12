"""The registry of notification transports: a fixed table, as Healthchecks' TRANSPORTS.

A transport is added by writing its module (a Transport subclass and a typed settings
class) and one line here. Targets are built from plain configuration with
:func:`build_target`, which validates everything before any message is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from sekimori.server.notify.email import EmailSettings, EmailTransport
from sekimori.server.notify.errors import NotifyConfigError
from sekimori.server.notify.transport import Transport, load_settings
from sekimori.server.notify.webhook import WebhookSettings, WebhookTransport

__all__ = ["TRANSPORTS", "build_target"]


def _email(data: Mapping[str, Any], where: str) -> Transport:
    return EmailTransport(load_settings(EmailSettings, data, where))


def _webhook(data: Mapping[str, Any], where: str) -> Transport:
    return WebhookTransport(load_settings(WebhookSettings, data, where))


TRANSPORTS: Mapping[str, Callable[[Mapping[str, Any], str], Transport]] = MappingProxyType(
    {EmailTransport.kind: _email, WebhookTransport.kind: _webhook}
)


def build_target(name: str, kind: str, data: Mapping[str, Any]) -> Transport:
    """Build the transport of target ``name`` from its settings.

    Raises NotifyConfigError naming the target and the field (unknown kind, missing or
    invalid field, unreadable password file, bad allow-list entry).
    """
    where = f"notify target {name!r}"
    factory = TRANSPORTS.get(kind)
    if factory is None:
        raise NotifyConfigError(f"{where}: unknown kind {kind!r} (one of {sorted(TRANSPORTS)})")
    try:
        return factory(data, where)
    except NotifyConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise NotifyConfigError(f"{where}: {exc}") from exc
