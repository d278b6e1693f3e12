"""The audit trail: append-only, hash-chained, verifiable.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own
fields in a canonical JSON form. ``audit_head`` keeps the newest seq and hash; an
append first bumps the head (which takes the write lock on SQLite and a row lock on
PostgreSQL), so appends from many requests or replicas form one chain.

``verify_chain`` recomputes every hash: an edited entry, a deleted one (a gap or a
broken link) or a cut-off tail (the head disagrees) is reported.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.schema import audit_head, audit_log

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditPage",
    "ChainReport",
    "append_audit",
    "entry_hash",
    "search_audit",
    "verify_chain",
]

GENESIS = "0" * 64
_HEAD_ID = 1


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time_us: int
    actor: str
    client_ip: str
    action: str
    target: str
    detail: str  # JSON object
    prev_hash: str
    hash: str

    def detail_dict(self) -> dict[str, Any]:
        value = json.loads(self.detail)
        return value if isinstance(value, dict) else {}


def _canonical(detail: Mapping[str, Any]) -> str:
    return json.dumps(
        detail, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )


def entry_hash(entry: AuditEntry) -> str:
    """The hash an entry must carry: over the previous hash and its own fields."""
    body = json.dumps(
        [
            entry.prev_hash,
            entry.seq,
            entry.time_us,
            entry.actor,
            entry.client_ip,
            entry.action,
            entry.target,
            entry.detail,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append_audit(
    conn_or_engine: sa.Engine | sa.Connection,
    *,
    actor: str,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    client_ip: str = "",
) -> AuditEntry:
    """Append one entry. With a Connection, the entry commits with the caller's
    transaction (a change and its audit entry land together or not at all)."""
    if isinstance(conn_or_engine, sa.Engine):
        with conn_or_engine.begin() as conn:
            return _append(conn, actor, action, target, detail or {}, client_ip=client_ip)
    return _append(conn_or_engine, actor, action, target, detail or {}, client_ip=client_ip)


def _append(
    conn: sa.Connection,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, Any],
    *,
    client_ip: str,
) -> AuditEntry:
    bumped = conn.execute(
        sa.update(audit_head).where(audit_head.c.id == _HEAD_ID).values(seq=audit_head.c.seq + 1)
    ).rowcount
    if bumped == 0:
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(audit_head).values(id=_HEAD_ID, seq=1, hash=GENESIS))
        except sa.exc.IntegrityError:
            conn.execute(
                sa.update(audit_head)
                .where(audit_head.c.id == _HEAD_ID)
                .values(seq=audit_head.c.seq + 1)
            )
    head = conn.execute(sa.select(audit_head).where(audit_head.c.id == _HEAD_ID)).one()
    seq, prev = int(head.seq), str(head.hash)
    entry = AuditEntry(
        seq=seq,
        time_us=now_us(),
        actor=actor[:128],
        client_ip=client_ip[:64],
        action=action[:64],
        target=target[:255],
        detail=_canonical(detail),
        prev_hash=prev,
        hash="",
    )
    digest = entry_hash(entry)
    conn.execute(
        sa.insert(audit_log).values(
            seq=seq,
            time_us=entry.time_us,
            actor=entry.actor,
            client_ip=entry.client_ip,
            action=entry.action,
            target=entry.target,
            detail=entry.detail,
            prev_hash=prev,
            hash=digest,
        )
    )
    conn.execute(sa.update(audit_head).where(audit_head.c.id == _HEAD_ID).values(hash=digest))
    return AuditEntry(**{**_as_dict(entry), "hash": digest})


def _as_dict(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in AuditEntry.__slots__}


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    total: int


def search_audit(
    engine: sa.Engine,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> AuditPage:
    """Entries newest first, filtered (actor and action exact, target contains)."""
    where: list[sa.ColumnElement[bool]] = []
    if actor:
        where.append(audit_log.c.actor == actor)
    if action:
        where.append(audit_log.c.action == action)
    if target:
        where.append(audit_log.c.target.contains(target, autoescape=True))
    if since_us is not None:
        where.append(audit_log.c.time_us >= since_us)
    if until_us is not None:
        where.append(audit_log.c.time_us < until_us)
    with engine.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.count()).select_from(audit_log).where(*where)
        ).scalar_one()
        rows = conn.execute(
            sa.select(audit_log)
            .where(*where)
            .order_by(audit_log.c.seq.desc())
            .offset(offset)
            .limit(limit)
        ).all()
    return AuditPage([AuditEntry(**row._asdict()) for row in rows], int(total))


@dataclass(frozen=True, slots=True)
class ChainReport:
    entries: int
    problems: list[str]

    @property
    def intact(self) -> bool:
        return not self.problems


def _walk(engine: sa.Engine, chunk: int = 5_000) -> Iterator[AuditEntry]:
    after = 0
    with engine.connect() as conn:
        while True:
            rows = conn.execute(
                sa.select(audit_log)
                .where(audit_log.c.seq > after)
                .order_by(audit_log.c.seq)
                .limit(chunk)
            ).all()
            if not rows:
                return
            for row in rows:
                yield AuditEntry(**row._asdict())
            after = rows[-1].seq


def verify_chain(engine: sa.Engine, *, max_problems: int = 100) -> ChainReport:
    problems: list[str] = []
    expected_seq = 1
    prev = GENESIS
    count = 0
    for entry in _walk(engine):
        count += 1
        if entry.seq != expected_seq:
            problems.append(f"entries {expected_seq}..{entry.seq - 1} are missing")
        if entry.prev_hash != prev:
            problems.append(f"entry {entry.seq}: does not link to the entry before it")
        digest = entry_hash(entry)
        if digest != entry.hash:
            problems.append(f"entry {entry.seq}: its content was changed (hash mismatch)")
        prev = entry.hash
        expected_seq = entry.seq + 1
        if len(problems) >= max_problems:
            break
    with engine.connect() as conn:
        head = conn.execute(sa.select(audit_head).where(audit_head.c.id == _HEAD_ID)).first()
    if head is not None and len(problems) < max_problems:
        if head.seq != expected_seq - 1:
            problems.append(
                f"the trail ends at entry {expected_seq - 1} but {head.seq} were written"
            )
        elif head.hash != prev:
            problems.append("the newest entry differs from the one recorded as newest")
    elif head is None and count:
        problems.append("the trail's head record is missing")
    return ChainReport(entries=count, problems=problems)
