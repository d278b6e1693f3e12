"""Pre-encoded event payloads that vary cheaply, for loading millions of events.

A :class:`Variant` is one payload (a real struct of sekimori.protocol.events) encoded
once, with msgspec's JSON encoder as ingest does, and its ``tag``/``subject`` computed
once by :func:`sekimori.server.event_fields.event_fields` as ingest does. The parts
that differ from event to event (the PC's user, and the times derived from the
event's own time) were encoded as sentinels and turned into ``str.format`` fields:

    {0} the user   {1} the event time minus a duration   {2} the duration   {3} the time

Filling them in gives byte for byte what encoding the struct with those values gives
(user names are plain ASCII, integers print the same), at the cost of one
``str.format`` instead of building and encoding a struct.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from sekimori.protocol.events import EVENT_KINDS, Payload
from sekimori.server.event_fields import MAX_SUBJECT, MAX_TAG, event_fields

__all__ = ["DURATION", "START", "TIME", "USER", "Variant", "make_variant"]

# Sentinels for the per-event parts: values no real field holds, replaced by format
# fields after encoding. A payload uses them where the PC's user name, the event's
# time, a duration, or the time minus that duration (a span's start) belongs.
USER = "zqxsentineluserzqx"
START = 7_100_000_000_000_001
DURATION = 7_100_000_000_000_002
TIME = 7_100_000_000_000_003
_SENTINELS = (USER, str(START), str(DURATION), str(TIME))

_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Variant:
    """One payload shape. ``payload``/``tag``/``subject`` are ``str.format``
    templates when ``dynamic``, plain strings otherwise. ``os_user``: None, a fixed
    name, or :data:`USER` for the PC's user. Durations are drawn from
    ``[min_duration_us, min_duration_us + duration_span_us)``."""

    kind: str
    payload: str
    tag: str | None
    subject: str | None
    os_user: str | None
    dynamic: bool
    min_duration_us: int = 0
    duration_span_us: int = 1


def _template(text: str) -> str:
    text = text.replace("{", "{{").replace("}", "}}")
    for field, sentinel in enumerate(_SENTINELS):
        text = text.replace(sentinel, "{" + str(field) + "}")
    return text


def make_variant(
    kind: str,
    payload: Payload,
    *,
    os_user: str | None,
    duration_us: tuple[int, int] = (0, 1),
) -> Variant:
    """Encode ``payload`` (built with the sentinels) once; see the module docstring."""
    if type(payload) is not EVENT_KINDS[kind]:
        raise TypeError(f"{kind} carries {EVENT_KINDS[kind].__name__}, not {type(payload)}")
    tag, subject = event_fields(payload)
    # event_fields cuts to the column sizes: a cut through a sentinel would not
    # survive substitution, so the catalog keeps clear of the limits.
    if (tag and len(tag) >= MAX_TAG - 64) or (subject and len(subject) >= MAX_SUBJECT - 64):
        raise ValueError(f"a {kind} variant is too close to the tag/subject size limit")
    encoded = _json.encode(payload).decode("utf-8")
    texts = [encoded, tag or "", subject or ""]
    dynamic = any(s in t for t in texts for s in _SENTINELS)
    if dynamic:
        encoded = _template(encoded)
        tag = _template(tag) if tag is not None else None
        subject = _template(subject) if subject is not None else None
    low, high = duration_us
    return Variant(
        kind=kind,
        payload=encoded,
        tag=tag,
        subject=subject,
        os_user=os_user,
        dynamic=dynamic,
        min_duration_us=low,
        duration_span_us=max(1, high - low),
    )
