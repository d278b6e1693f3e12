"""The channel's batch conversion (server/batch_rows.py): what is stored, what is
quarantined and why, and pictures taken out of screen frames."""

from __future__ import annotations

import hashlib

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol.events import AgentLog, Event
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.server.batch_rows import MAX_INT64, stored_batch


def _event(seq: int, payload: msgspec.Struct, kind: str, time_us: int = 1) -> Event:
    return Event(seq, time_us, kind, "alice", msgspec.Raw(msgspec.msgpack.encode(payload)))


LOG = AgentLog(level="info", source="t", message="m")


def test_resent_events_are_skipped_and_bad_ones_quarantined_with_the_reason() -> None:
    events = [
        _event(1, LOG, "agent.log"),  # at or below the floor: a resend
        _event(2, LOG, "agent.log"),
        _event(3, LOG, "agent.log", time_us=MAX_INT64 + 1),
        _event(4, LOG, "no.such_kind"),
        _event(5, AgentLog(level="info", source="t", message="m"), "web.visit"),
    ]
    batch, rejections = stored_batch("dev", events, floor=1, through_seq=5, received_us=9)
    assert [r[1] for r in batch.rows] == [2]
    assert batch.rows[0][3] == 9 and batch.rows[0][4] == "agent.log"
    assert batch.payloads == [LOG]
    assert [q.seq for q in batch.quarantined] == [3, 4, 5]
    assert [r.seq for r in rejections] == [3, 4, 5]
    assert "out of range" in rejections[0].reason
    assert "unknown event kind" in rejections[1].reason
    assert batch.through_seq == 5


def test_a_screen_frame_gives_up_its_picture() -> None:
    picture = b"\xff\xd8 not really a jpeg"
    frame = ScreenFrame(
        monitor=0, width=4, height=3, screen_width=8, screen_height=6, format="jpeg",
        image=picture, sha256=hashlib.sha256(picture).hexdigest(), trigger="interval",
    )  # fmt: skip
    batch, rejections = stored_batch(
        "dev", [_event(1, frame, "screen.frame")], floor=0, through_seq=1, received_us=2
    )
    assert rejections == []
    assert len(batch.frames) == 1
    assert picture not in batch.rows[0][6].encode()
    assert batch.payloads is not None
    stored = batch.payloads[0]
    assert isinstance(stored, ScreenFrame) and stored.image == b""


@given(st.lists(st.integers(1, 50), unique=True, min_size=1).map(sorted), st.integers(0, 50))
def test_only_events_above_the_floor_are_kept(seqs: list[int], floor: int) -> None:
    events = [_event(s, LOG, "agent.log") for s in seqs]
    batch, _ = stored_batch("dev", events, floor=floor, through_seq=seqs[-1], received_us=1)
    assert [r[1] for r in batch.rows] == [s for s in seqs if s > floor]
    assert batch.payloads is not None and len(batch.payloads) == len(batch.rows)
