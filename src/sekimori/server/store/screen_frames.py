"""Screen frames (issue 6): the rows of ``screen_frames`` and their blobs.

Ingest: ``take_frame`` verifies a ``screen.frame`` payload's digest and splits off
the picture (the event is stored with ``image`` empty); the ingest writer puts the
picture in the blob store before its transaction (content addressed, so a retried
batch writes nothing twice) and ``write_frames`` adds the rows in the transaction.
A blob whose transaction failed is an orphan: ``collect_orphans`` removes it later.

Console: ``list_frames`` / ``get_frame`` apply the user's scope in SQL.
Retention: ``purge_expired_frames`` deletes rows past the ``screen`` retention of
their group and the blobs no longer referenced, audited like the event purge.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sekimori.protocol.errors import InvalidMessage
from sekimori.protocol.events.screen import ScreenFrame
from sekimori.server.blobs import BlobStore
from sekimori.server.store.audit import append_audit
from sekimori.server.store.schema import devices, screen_frames
from sekimori.server.store.scope import Scope

__all__ = [
    "ORPHAN_GRACE_SECONDS",
    "FrameInfo",
    "PendingFrame",
    "collect_orphans",
    "get_frame",
    "latest_frame_time",
    "list_frames",
    "purge_expired_frames",
    "take_frame",
    "write_frames",
]

_US_PER_DAY = 86_400_000_000
# A blob younger than this is never collected as an orphan: its frame row may be in a
# transaction that has not committed yet.
ORPHAN_GRACE_SECONDS = 3600.0


@dataclass(slots=True)
class PendingFrame:
    """A frame on its way from the channel to the store, picture included."""

    device_id: str
    seq: int
    time_us: int
    os_user: str | None
    payload: ScreenFrame  # with the image

    def row(self) -> dict[str, object]:
        p = self.payload
        return {
            "device_id": self.device_id,
            "seq": self.seq,
            "time_us": self.time_us,
            "monitor": p.monitor,
            "sha256": p.sha256,
            "size": len(p.image),
            "width": p.width,
            "height": p.height,
            "format": p.format,
            "trigger": p.trigger,
            "title": p.title,
            "application": None if p.application is None else p.application[:255],
            "os_user": self.os_user,
        }


def take_frame(
    device_id: str, seq: int, time_us: int, os_user: str | None, payload: ScreenFrame
) -> tuple[ScreenFrame, PendingFrame]:
    """The payload to store (``image`` empty) and the frame to put in the blob store.
    InvalidMessage (the event is quarantined) when ``sha256`` does not match."""
    if hashlib.sha256(payload.image).hexdigest() != payload.sha256:
        raise InvalidMessage("screen.frame: sha256 does not match the image")
    if not payload.image:
        raise InvalidMessage("screen.frame: the image is empty")
    stripped = msgspec.structs.replace(payload, image=b"")
    return stripped, PendingFrame(device_id, seq, time_us, os_user, payload)


def write_frames(conn: sa.Connection, frames: Sequence[PendingFrame]) -> None:
    """Insert the frames' rows (a resent frame is skipped). Their blobs must be stored."""
    if not frames:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(screen_frames).on_conflict_do_nothing(),
        [f.row() for f in frames],
    )


@dataclass(frozen=True, slots=True)
class FrameInfo:
    device_id: str
    hostname: str
    seq: int
    time_us: int
    monitor: int
    sha256: str
    size: int
    width: int
    height: int
    format: str
    trigger: str
    title: str | None
    application: str | None
    os_user: str | None

    @property
    def ext(self) -> str:
        return "jpg" if self.format == "jpeg" else self.format


_COLUMNS = (
    screen_frames.c.device_id,
    devices.c.hostname,
    screen_frames.c.seq,
    screen_frames.c.time_us,
    screen_frames.c.monitor,
    screen_frames.c.sha256,
    screen_frames.c.size,
    screen_frames.c.width,
    screen_frames.c.height,
    screen_frames.c.format,
    screen_frames.c.trigger,
    screen_frames.c.title,
    screen_frames.c.application,
    screen_frames.c.os_user,
)


def _info(row: sa.Row[Any]) -> FrameInfo:
    return FrameInfo(
        device_id=str(row.device_id),
        hostname=str(row.hostname),
        seq=int(row.seq),
        time_us=int(row.time_us),
        monitor=int(row.monitor),
        sha256=str(row.sha256),
        size=int(row.size),
        width=int(row.width),
        height=int(row.height),
        format=str(row.format),
        trigger=str(row.trigger),
        title=row.title,
        application=row.application,
        os_user=row.os_user,
    )


def _base(scope: Scope) -> sa.Select[Any]:
    return (
        sa.select(*_COLUMNS)
        .select_from(screen_frames.join(devices, devices.c.id == screen_frames.c.device_id))
        .where(scope.device_filter())
    )


def _who(query: sa.Select[Any], device_id: str | None, os_user: str | None) -> sa.Select[Any]:
    if device_id is not None:
        query = query.where(screen_frames.c.device_id == device_id)
    if os_user is not None:
        query = query.where(screen_frames.c.os_user == os_user)
    return query


def list_frames(
    engine: sa.Engine,
    scope: Scope,
    *,
    since_us: int,
    until_us: int,
    device_id: str | None = None,
    os_user: str | None = None,
    limit: int = 2000,
) -> list[FrameInfo]:
    """The frames of one device and/or one OS user in [since, until), oldest first."""
    query = (
        _who(_base(scope), device_id, os_user)
        .where(screen_frames.c.time_us >= since_us, screen_frames.c.time_us < until_us)
        .order_by(screen_frames.c.time_us, screen_frames.c.device_id, screen_frames.c.seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_info(r) for r in conn.execute(query)]


def latest_frame_time(
    engine: sa.Engine, scope: Scope, *, device_id: str | None = None, os_user: str | None = None
) -> int | None:
    query = _who(
        sa.select(sa.func.max(screen_frames.c.time_us))
        .select_from(screen_frames.join(devices, devices.c.id == screen_frames.c.device_id))
        .where(scope.device_filter()),
        device_id,
        os_user,
    )
    with engine.connect() as conn:
        value = conn.execute(query).scalar_one_or_none()
    return None if value is None else int(value)


def get_frame(engine: sa.Engine, scope: Scope, device_id: str, seq: int) -> FrameInfo | None:
    query = _base(scope).where(screen_frames.c.device_id == device_id, screen_frames.c.seq == seq)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else _info(row)


def _referenced(conn: sa.Connection, digests: Iterable[str]) -> set[str]:
    wanted = sorted(set(digests))
    found: set[str] = set()
    for at in range(0, len(wanted), 500):
        part = wanted[at : at + 500]
        found.update(
            str(v)
            for v in conn.execute(
                sa.select(screen_frames.c.sha256).where(screen_frames.c.sha256.in_(part)).distinct()
            ).scalars()
        )
    return found


def _drop_unreferenced(engine: sa.Engine, blobs: BlobStore, digests: Iterable[str]) -> int:
    """Delete the blobs of ``digests`` that no row references and that were not
    written or re-sent within the grace period. Returns how many were deleted."""
    candidates = set(digests)
    if not candidates:
        return 0
    with engine.connect() as conn:
        candidates -= _referenced(conn, candidates)
    cutoff = time.time() - ORPHAN_GRACE_SECONDS
    deleted = 0
    for sha256 in sorted(candidates):
        modified = blobs.modified(sha256)
        if modified is None or modified > cutoff:
            continue
        if blobs.delete(sha256):
            deleted += 1
    return deleted


def purge_expired_frames(
    engine: sa.Engine,
    retention: Mapping[tuple[int, str], int],
    now_us: int,
    blobs: BlobStore,
    *,
    chunk: int = 5_000,
    actor: str = "system:retention",
) -> dict[int, tuple[int, int]]:
    """Delete the frames older than the ``screen`` retention of their group (keys of
    ``retention`` as in ``store.policies.retention_by_group``) and the blobs no frame
    references any more. Returns (rows, blobs) deleted per group; appends one
    "retention.purge_screens" audit entry when anything was deleted."""
    counts: dict[int, tuple[int, int]] = {}
    for (group_id, domain), days in sorted(retention.items()):
        if domain != "screen":
            continue
        if days < 1:
            raise ValueError(f"retention of screen in group {group_id}: days must be >= 1")
        cutoff = now_us - days * _US_PER_DAY
        in_group = sa.select(devices.c.id).where(devices.c.group_id == group_id)
        expired = (
            sa.select(screen_frames.c.device_id, screen_frames.c.seq, screen_frames.c.sha256)
            .where(screen_frames.c.time_us < cutoff, screen_frames.c.device_id.in_(in_group))
            .limit(chunk)
        )
        rows = blob_count = 0
        while True:
            with engine.begin() as conn:
                found = [
                    (str(r.device_id), int(r.seq), str(r.sha256)) for r in conn.execute(expired)
                ]
                if found:
                    conn.execute(
                        sa.delete(screen_frames).where(
                            sa.tuple_(screen_frames.c.device_id, screen_frames.c.seq).in_(
                                [(d, s) for d, s, _ in found]
                            )
                        )
                    )
            rows += len(found)
            blob_count += _drop_unreferenced(engine, blobs, (h for _, _, h in found))
            if len(found) < chunk:
                break
        if rows:
            counts[group_id] = (rows, blob_count)
    if counts:
        append_audit(
            engine,
            actor=actor,
            action="retention.purge_screens",
            detail={
                "before_us": now_us,
                "deleted": [
                    {
                        "group_id": g,
                        "days": retention[(g, "screen")],
                        "frames": n,
                        "blobs": b,
                    }
                    for g, (n, b) in counts.items()
                ],
            },
        )
    return counts


def collect_orphans(engine: sa.Engine, blobs: BlobStore, *, batch: int = 1000) -> int:
    """Delete the blobs no frame references (older than the grace period): pictures
    of batches whose transaction failed, or left by an interrupted purge."""
    deleted = 0
    pending: list[str] = []
    for sha256 in blobs.digests():
        pending.append(sha256)
        if len(pending) >= batch:
            deleted += _drop_unreferenced(engine, blobs, pending)
            pending = []
    deleted += _drop_unreferenced(engine, blobs, pending)
    return deleted
