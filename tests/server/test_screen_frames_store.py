"""Screen frame queries (SQLite and PostgreSQL): scope in SQL, periods, the newest
frame, the digest check at ingest."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from sekimori.protocol.errors import InvalidMessage
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.scope import EVERYTHING, Scope
from sekimori.server.store.screen_frames import (
    PendingFrame,
    get_frame,
    latest_frame_time,
    list_frames,
    take_frame,
    write_frames,
)
from tests.console.seed import add_device


def _frame(image: bytes, title: str = "t") -> ScreenFrame:
    return ScreenFrame(
        monitor=1,
        width=2,
        height=3,
        screen_width=4,
        screen_height=5,
        format="webp",
        image=image,
        sha256=hashlib.sha256(image).hexdigest(),
        trigger="interval",
        title=title,
        application="a" * 300,
    )


def test_take_frame_checks_the_digest_and_strips_the_picture() -> None:
    stripped, pending = take_frame("d", 7, 100, "taro", _frame(b"picture"))
    assert stripped.image == b"" and stripped.sha256 == hashlib.sha256(b"picture").hexdigest()
    assert pending.payload.image == b"picture"
    assert pending.row()["size"] == 7
    assert pending.row()["application"] == "a" * 255
    forged = _frame(b"picture")
    forged.sha256 = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(InvalidMessage, match="sha256 does not match"):
        take_frame("d", 7, 100, None, forged)


def test_queries_apply_scope_and_period(engine: sa.Engine) -> None:
    sales = add_device(engine, "pc-sales", group="sales")
    hr = add_device(engine, "pc-hr", group="hr")
    with engine.begin() as conn:
        sales_id = ensure_group(conn, "sales")
        write_frames(
            conn,
            [
                PendingFrame(sales, 1, 1_000, "taro", _frame(b"1", "one")),
                PendingFrame(sales, 2, 2_000, "taro", _frame(b"2", "two")),
                PendingFrame(sales, 3, 3_000, "jiro", _frame(b"3", "three")),
                PendingFrame(hr, 1, 1_500, "taro", _frame(b"4", "four")),
            ],
        )
    only_sales = Scope(all_groups=False, group_ids=frozenset({sales_id}))
    nothing = Scope(all_groups=False)
    found = list_frames(engine, EVERYTHING, since_us=0, until_us=10_000, os_user="taro")
    assert [(f.device_id, f.seq) for f in found] == [(sales, 1), (hr, 1), (sales, 2)]
    assert found[0].hostname == "pc-sales" and found[0].ext == "webp"
    found = list_frames(engine, only_sales, since_us=0, until_us=10_000, os_user="taro")
    assert [(f.device_id, f.seq) for f in found] == [(sales, 1), (sales, 2)]
    found = list_frames(engine, EVERYTHING, since_us=2_000, until_us=3_000, device_id=sales)
    assert [f.title for f in found] == ["two"]
    assert list_frames(engine, nothing, since_us=0, until_us=10_000, device_id=sales) == []
    assert latest_frame_time(engine, EVERYTHING, device_id=sales) == 3_000
    assert latest_frame_time(engine, only_sales, os_user="taro") == 2_000
    assert latest_frame_time(engine, only_sales, device_id=hr) is None
    assert get_frame(engine, only_sales, hr, 1) is None
    frame = get_frame(engine, EVERYTHING, hr, 1)
    assert frame is not None and frame.sha256 == hashlib.sha256(b"4").hexdigest()
    assert frame.monitor == 1 and (frame.width, frame.height) == (2, 3)
