"""The event as the rules see it: the envelope fields and the payload as plain data."""

from __future__ import annotations

from dataclasses import dataclass

from sekimori.protocol.events import Payload

__all__ = ["EvalEvent"]


# Not frozen: a frozen dataclass's __init__ costs twice as much, and ingest builds one
# per evaluated event. Treat it as immutable.
@dataclass(slots=True)
class EvalEvent:
    """One stored event. ``payload`` is the validated payload struct of its kind (the
    one ingest decoded from the agent's batch, or decoded from the stored JSON with
    its type): rules read its attributes, so no dictionary is built per event.
    ``group`` is the device's group name (None when it has none)."""

    device_id: str
    group: str | None
    kind: str
    time_us: int
    os_user: str | None
    payload: Payload
