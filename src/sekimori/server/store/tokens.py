"""One-time, expiring enrollment tokens.

Only the SHA-256 of a token is stored. A token is consumed with a conditional UPDATE
inside the enrollment transaction, so two agents racing with the same token cannot
both succeed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import devices, enrollment_tokens, groups
from sekimori.server.store.scope import EVERYTHING, Scope

__all__ = [
    "IssuedToken",
    "TokenInfo",
    "TokenRefused",
    "consume_token",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
]


class TokenRefused(Exception):
    """The token cannot enroll a device; the message says why and is safe to show."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    group: str
    expires_us: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as the console lists it: never the token itself (only its hash is
    stored)."""

    id: int
    group: str
    created_us: int
    created_by: str
    expires_us: int
    used_us: int | None
    used_by_device: str | None
    used_by_hostname: str | None
    revoked_us: int | None

    def state(self, now: int) -> str:
        """One of "revoked", "used", "expired", "valid"."""
        if self.revoked_us is not None:
            return "revoked"
        if self.used_us is not None:
            return "used"
        return "expired" if self.expires_us <= now else "valid"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    engine: sa.Engine, *, group: str, ttl_seconds: float, created_by: str
) -> IssuedToken:
    if ttl_seconds <= 0:
        raise ValueError("a token must expire in the future")
    token = "sek_" + secrets.token_urlsafe(32)
    now = now_us()
    expires = now + int(ttl_seconds * 1_000_000)
    with engine.begin() as conn:
        group_id = ensure_group(conn, group)
        inserted = conn.execute(
            sa.insert(enrollment_tokens).values(
                token_hash=hash_token(token),
                group_id=group_id,
                created_us=now,
                expires_us=expires,
                created_by=created_by,
            )
        )
        key = inserted.inserted_primary_key
        if key is None:
            raise RuntimeError("the store returned no id for the new token")
        token_id = int(key[0])
    return IssuedToken(token=token, group=group, expires_us=expires, id=token_id)


def list_tokens(
    engine: sa.Engine, scope: Scope = EVERYTHING, *, limit: int = 200
) -> list[TokenInfo]:
    """The newest ``limit`` tokens of the groups in ``scope``, newest first."""
    query = (
        sa.select(
            enrollment_tokens.c.id,
            groups.c.name.label("group"),
            enrollment_tokens.c.created_us,
            enrollment_tokens.c.created_by,
            enrollment_tokens.c.expires_us,
            enrollment_tokens.c.used_us,
            enrollment_tokens.c.used_by_device,
            devices.c.hostname.label("used_by_hostname"),
            enrollment_tokens.c.revoked_us,
        )
        .join(groups, groups.c.id == enrollment_tokens.c.group_id)
        .outerjoin(devices, devices.c.id == enrollment_tokens.c.used_by_device)
        .where(scope.device_filter(enrollment_tokens.c.group_id))
        .order_by(enrollment_tokens.c.created_us.desc(), enrollment_tokens.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [TokenInfo(**row._asdict()) for row in conn.execute(query)]


def revoke_token(engine: sa.Engine, token_id: int, scope: Scope = EVERYTHING) -> str | None:
    """Revoke an unused token of a group in ``scope``. Returns its group's name, or None
    when there is no such token in scope or it was already used or revoked."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(groups.c.name)
            .join(enrollment_tokens, enrollment_tokens.c.group_id == groups.c.id)
            .where(enrollment_tokens.c.id == token_id, scope.device_filter(groups.c.id))
        ).first()
        if row is None:
            return None
        changed = conn.execute(
            sa.update(enrollment_tokens)
            .where(
                enrollment_tokens.c.id == token_id,
                enrollment_tokens.c.used_us.is_(None),
                enrollment_tokens.c.revoked_us.is_(None),
            )
            .values(revoked_us=now_us())
        ).rowcount
    return str(row.name) if changed == 1 else None


def consume_token(
    conn: sa.Connection, token: str, *, device_id: str, expected_group: str | None
) -> int:
    """Mark the token used by ``device_id`` and return its group id.

    Must run inside the transaction that creates the device. Raises TokenRefused
    (unknown, already used, expired, revoked, or for another group).
    """
    digest = hash_token(token)
    row = conn.execute(
        sa.select(
            enrollment_tokens.c.id,
            enrollment_tokens.c.group_id,
            enrollment_tokens.c.used_us,
            enrollment_tokens.c.expires_us,
            enrollment_tokens.c.revoked_us,
            groups.c.name,
        )
        .join(groups, groups.c.id == enrollment_tokens.c.group_id)
        .where(enrollment_tokens.c.token_hash == digest)
    ).first()
    now = now_us()
    if row is None:
        raise TokenRefused("unknown enrollment token")
    if row.revoked_us is not None:
        raise TokenRefused("this enrollment token was revoked")
    if row.used_us is not None:
        raise TokenRefused("this enrollment token was already used; create a new one")
    if row.expires_us <= now:
        raise TokenRefused("this enrollment token has expired; create a new one")
    if expected_group is not None and expected_group != row.name:
        raise TokenRefused(
            f"this enrollment token is for group {row.name!r}, not {expected_group!r}"
        )
    claimed = conn.execute(
        sa.update(enrollment_tokens)
        .where(
            enrollment_tokens.c.id == row.id,
            enrollment_tokens.c.used_us.is_(None),
            enrollment_tokens.c.revoked_us.is_(None),
            enrollment_tokens.c.expires_us > now,
        )
        .values(used_us=now, used_by_device=device_id)
    ).rowcount
    if claimed != 1:
        raise TokenRefused("this enrollment token was already used; create a new one")
    return int(row.group_id)


def create_default_group(engine: sa.Engine, name: str) -> int:
    with engine.begin() as conn:
        return ensure_group(conn, name)
