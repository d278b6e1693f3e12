"""The collector plug-in contract.

A collector watches one aspect of the PC (processes, files, windows ...) and turns
what it sees into typed events. The contract:

* ``run(stop)`` is the one required method. The supervisor calls it in a thread of
  its own; it runs until ``stop`` is set and then returns promptly (it never blocks
  for more than about a second without looking at ``stop``).
* It reports through ``self.sink`` only: events go to the durable outbox, optionally
  with a cursor ("what I have reported so far") saved in the same transaction, so a
  restart neither repeats nor loses events. It never touches the network.
* It fails by raising. ``CollectorError(permanent=True)`` means "this cannot work
  on this PC" (no X display, no CUPS): the collector is reported unavailable and not
  restarted. Any other exception is reported and the collector is restarted with
  backoff. A failing collector never stops the others.
* Its settings are a ``CollectorSettings`` subclass; they arrive from the agent's
  configuration (later: the server's policy) and are validated at start.
* OS-specific work goes through ``sekimori.agent.platform``, never inline.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from typing import ClassVar

import msgspec

from sekimori.agent.outbox import Outbox, PendingEvent
from sekimori.protocol.events import Payload

__all__ = ["Collector", "CollectorError", "CollectorSettings", "Sink"]


class CollectorError(Exception):
    """A collector cannot continue. ``permanent``: retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class CollectorSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    interval_seconds: float = 5.0


class Sink:
    """Where a collector's events go: the outbox, under the collector's cursor name."""

    def __init__(self, outbox: Outbox, name: str) -> None:
        self._outbox = outbox
        self._cursor_name = f"collector.{name}"

    def emit(
        self,
        kind: str,
        payload: Payload,
        *,
        os_user: str | None = None,
        time_us: int | None = None,
    ) -> None:
        self._outbox.append(kind, payload, os_user=os_user, time_us=time_us)

    def emit_many(self, events: Sequence[PendingEvent], *, cursor: bytes | None = None) -> None:
        """Append events, and save ``cursor`` atomically with them if given."""
        self._outbox.append_many(
            events, cursor=(self._cursor_name, cursor) if cursor is not None else None
        )

    def cursor(self) -> bytes | None:
        return self._outbox.cursor(self._cursor_name)


class Collector(abc.ABC):
    name: ClassVar[str]
    settings_type: ClassVar[type[CollectorSettings]] = CollectorSettings

    def __init__(self, settings: CollectorSettings, sink: Sink) -> None:
        self.settings = settings
        self.sink = sink

    @abc.abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Collect until ``stop`` is set. Raises on failure (see the module contract)."""
