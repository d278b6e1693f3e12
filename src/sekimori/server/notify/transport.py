"""The contract every notification transport keeps (after Healthchecks' ``Transport``).

A transport delivers one :class:`AlertMessage` to one configured target (a mail relay and
its recipients, a webhook URL). It is built once from its typed settings and may be
called from several threads at once, so it keeps no per-send state on ``self``.

``notify`` either returns (delivered, as far as the target's protocol can say) or raises
:class:`TransportError` whose ``permanent`` flag tells the caller whether a retry can help.
It raises nothing else on purpose; any other exception is a bug in the transport. It
blocks (SMTP and HTTP are done with the standard library): call it from a worker thread,
never on the event loop.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import msgspec

from sekimori.server.notify.errors import NotifyConfigError
from sekimori.server.notify.message import AlertMessage

__all__ = ["Transport", "load_settings"]

S = TypeVar("S")


class Transport(abc.ABC):
    """Base class of the transports; see the module docstring for the contract."""

    #: The name this transport is registered under (``email``, ``webhook``).
    kind: ClassVar[str]

    @abc.abstractmethod
    def notify(self, message: AlertMessage) -> None:
        """Deliver ``message``; raise TransportError(reason, permanent=...) on failure."""


def load_settings(settings_type: type[S], data: Mapping[str, Any], where: str) -> S:
    """Turn plain configuration data into ``settings_type``.

    Raises NotifyConfigError naming ``where`` and the offending field, e.g.
    ``notify.targets.ops-mail: Expected `int`, got `str` - at `$.port```.
    """
    try:
        return msgspec.convert(dict(data), settings_type)
    except msgspec.ValidationError as exc:
        raise NotifyConfigError(f"{where}: {exc}") from exc
