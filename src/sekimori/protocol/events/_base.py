"""The event envelope and the base of every payload."""

from __future__ import annotations

import msgspec

__all__ = ["Event", "Payload"]


class Payload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of all event payloads."""


class Event(msgspec.Struct, array_like=True):
    """One event as it travels in a batch: ``[seq, time_us, kind, os_user, payload]``.

    ``payload`` stays raw msgpack until the server validates it against its kind, so a
    single bad event can be quarantined without refusing the whole batch.
    """

    seq: int
    time_us: int
    kind: str
    os_user: str | None
    payload: msgspec.Raw
