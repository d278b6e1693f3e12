"""Retention of screen frames (SQLite and PostgreSQL, real blob files): rows past the
group's ``screen`` retention go, with the blobs no other frame references, audited;
orphan blobs (their transaction failed) are collected after a grace period."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import sqlalchemy as sa

from sekimori.protocol.events.screen import ScreenFrame
from sekimori.server.alerting.retention import RetentionPurge
from sekimori.server.blobs import KeyRing, LocalEncryptedBlobStore
from sekimori.server.policies import validate_policy
from sekimori.server.store.audit import search_audit
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.policies import save_policy
from sekimori.server.store.schema import screen_frames
from sekimori.server.store.screen_frames import (
    ORPHAN_GRACE_SECONDS,
    PendingFrame,
    collect_orphans,
    write_frames,
)
from sekimori.settings import ServerSettings
from tests.console.seed import add_device
from tests.server.alerting.conftest import Clock

DAY = 86_400_000_000


def _frame(image: bytes) -> ScreenFrame:
    return ScreenFrame(
        monitor=0,
        width=1,
        height=1,
        screen_width=1,
        screen_height=1,
        format="png",
        image=image,
        sha256=hashlib.sha256(image).hexdigest(),
        trigger="interval",
    )


def _store(
    engine: sa.Engine, blobs: LocalEncryptedBlobStore, device: str, frames: list[tuple[int, bytes]]
) -> None:
    pending = []
    for seq, (time_us, image) in enumerate(frames, start=1):
        blobs.put(image)
        pending.append(PendingFrame(device, seq, time_us, "taro", _frame(image)))
    with engine.begin() as conn:
        write_frames(conn, pending)
        write_frames(conn, pending)  # a resent batch stores nothing twice


def _age(blobs: LocalEncryptedBlobStore, image: bytes, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(blobs.path_of(hashlib.sha256(image).hexdigest()), (then, then))


def _seqs(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(int(s) for s in conn.execute(sa.select(screen_frames.c.seq)).scalars())


def test_expired_frames_and_their_blobs_are_purged(
    engine: sa.Engine, clock: Clock, tmp_path: Path
) -> None:
    blobs = LocalEncryptedBlobStore(tmp_path / "blobs", KeyRing(tmp_path / "keys"))
    with engine.begin() as conn:
        group = ensure_group(conn, "sales")
    device = add_device(engine, "pc-1", group="sales")
    save_policy(
        engine, group, validate_policy({"retention_days": {"screen": 7}}), "alice", now_us=clock.now
    )
    now = clock.now
    old, shared, recent = b"old picture", b"unchanged screen", b"recent picture"
    _store(
        engine,
        blobs,
        device,
        [(now - 9 * DAY, old), (now - 8 * DAY, shared), (now - DAY, shared), (now - DAY, recent)],
    )
    for image in (old, shared, recent):
        _age(blobs, image, 2 * ORPHAN_GRACE_SECONDS)  # written days ago
    job = RetentionPurge(
        engine, ServerSettings(retention_purge_seconds=3600), owner="a", clock=clock, blobs=blobs
    )
    job.run_once()
    assert _seqs(engine) == [3, 4]
    assert not blobs.exists(hashlib.sha256(old).hexdigest())
    # Still referenced by the frame of yesterday.
    assert blobs.get(hashlib.sha256(shared).hexdigest()) == shared
    assert blobs.get(hashlib.sha256(recent).hexdigest()) == recent
    [entry] = search_audit(engine, action="retention.purge_screens").entries
    assert entry.actor == "system:retention"
    assert entry.detail_dict()["deleted"] == [
        {"group_id": group, "days": 7, "frames": 2, "blobs": 1}
    ]


def test_orphans_are_collected_after_the_grace_period(engine: sa.Engine, tmp_path: Path) -> None:
    blobs = LocalEncryptedBlobStore(tmp_path / "blobs", KeyRing(tmp_path / "keys"))
    device = add_device(engine, "pc-1", group="sales")
    kept = b"referenced"
    _store(engine, blobs, device, [(1, kept)])
    orphan = blobs.put(b"its transaction failed")
    fresh = blobs.put(b"its transaction is still running")
    _age(blobs, kept, 2 * ORPHAN_GRACE_SECONDS)
    _age(blobs, b"its transaction failed", 2 * ORPHAN_GRACE_SECONDS)
    assert collect_orphans(engine, blobs) == 1
    assert not blobs.exists(orphan.sha256)
    assert blobs.exists(fresh.sha256)
    assert blobs.get(hashlib.sha256(kept).hexdigest()) == kept
