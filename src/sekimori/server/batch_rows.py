"""From a decoded batch to what the ingest writer stores: rows, typed payloads, frames
and quarantined events (pure: no I/O, no session state).

Each event above ``floor`` (the device's highest sequence already received) is checked
(time in range, os_user bounded), its payload validated against its kind; a valid one
becomes an ``EventRow`` (JSON payload, tag and subject) beside its typed payload (the
alert rules read those), a ``screen.frame`` also gives up its picture for the blob
store; an invalid one is quarantined with the reason, and the agent is told which.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from sekimori.protocol import InvalidMessage, ProtocolError, Rejection, decode_payload
from sekimori.protocol.events import Event, Payload
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.server.event_fields import event_fields
from sekimori.server.store.events import EventRow, QuarantineRow, StoredBatch
from sekimori.server.store.screen_frames import PendingFrame, take_frame

__all__ = ["MAX_INT64", "stored_batch"]

MAX_INT64 = 2**63 - 1

_json = msgspec.json.Encoder()


def stored_batch(
    device_id: str,
    events: Sequence[Event],
    *,
    floor: int,
    through_seq: int,
    received_us: int,
) -> tuple[StoredBatch, list[Rejection]]:
    """The batch to store for ``events`` and the rejections to tell the agent."""
    rows: list[EventRow] = []
    payloads: list[Payload] = []
    quarantined: list[QuarantineRow] = []
    rejections: list[Rejection] = []
    frames: list[PendingFrame] = []
    for event in events:
        if event.seq <= floor:
            continue  # already stored (a resend after a lost ack)
        try:
            if not 0 <= event.time_us <= MAX_INT64:
                raise InvalidMessage(f"time_us {event.time_us} is out of range")
            if event.os_user is not None and (len(event.os_user) > 256 or "\x00" in event.os_user):
                raise InvalidMessage("os_user must be at most 256 characters without NUL")
            payload = decode_payload(event.kind, event.payload)
            if isinstance(payload, ScreenFrame):  # the picture goes to the blob store
                payload, frame = take_frame(
                    device_id, event.seq, event.time_us, event.os_user, payload
                )
                frames.append(frame)
        except ProtocolError as exc:
            quarantined.append(
                QuarantineRow(
                    device_id, event.seq, received_us, event.kind, exc.message, bytes(event.payload)
                )
            )
            rejections.append(Rejection(seq=event.seq, reason=exc.message))
            continue
        tag, subject = event_fields(payload)
        payloads.append(payload)
        rows.append(
            (
                device_id,
                event.seq,
                event.time_us,
                received_us,
                event.kind,
                event.os_user,
                _json.encode(payload).decode("utf-8"),
                tag,
                subject,
            )
        )
    batch = StoredBatch(
        device_id=device_id,
        through_seq=through_seq,
        rows=rows,
        quarantined=quarantined,
        payloads=payloads,
        frames=frames,
    )
    return batch, rejections
