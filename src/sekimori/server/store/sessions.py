"""Console sessions, stored on the server so logout and disabling a user end them at once.

The browser holds a random 256-bit token; the table holds its SHA-256 (a copy of the
database does not yield live sessions). Each session has its own CSRF token.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.schema import console_sessions, users

__all__ = [
    "NewSession",
    "Session",
    "create_session",
    "end_session",
    "end_user_sessions",
    "load_session",
    "promote_session",
]

# last_seen is written at most this often (a page view is not a write per request).
_TOUCH_EVERY_US = 60 * 1_000_000


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    user_id: int
    csrf_token: str
    mfa_pending: bool
    created_us: int
    expires_us: int


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # for the cookie; never stored
    session: Session


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_session(
    engine: sa.Engine, user_id: int, *, mfa_pending: bool, max_age_s: float, client_ip: str
) -> NewSession:
    token = secrets.token_urlsafe(32)
    now = now_us()
    session = Session(
        token_hash=_hash(token),
        user_id=user_id,
        csrf_token=secrets.token_urlsafe(32),
        mfa_pending=mfa_pending,
        created_us=now,
        expires_us=now + int(max_age_s * 1_000_000),
    )
    with engine.begin() as conn:
        # Expired sessions are swept as new ones are made.
        conn.execute(sa.delete(console_sessions).where(console_sessions.c.expires_us < now))
        conn.execute(
            sa.insert(console_sessions).values(
                token_hash=session.token_hash,
                user_id=user_id,
                created_us=now,
                last_seen_us=now,
                expires_us=session.expires_us,
                csrf_token=session.csrf_token,
                mfa_pending=mfa_pending,
                client_ip=client_ip[:64],
            )
        )
    return NewSession(token, session)


def load_session(engine: sa.Engine, token: str, *, idle_s: float) -> Session | None:
    """The live session for a cookie token, or None (unknown, expired, idle too long,
    or its user disabled). Refreshes last_seen now and then."""
    if not token or len(token) > 128:
        return None
    now = now_us()
    key = _hash(token)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(console_sessions, users.c.disabled)
            .join(users, users.c.id == console_sessions.c.user_id)
            .where(console_sessions.c.token_hash == key)
        ).first()
    if row is None:
        return None
    if row.expires_us <= now or now - row.last_seen_us > idle_s * 1_000_000 or row.disabled:
        end_session(engine, token)
        return None
    if now - row.last_seen_us > _TOUCH_EVERY_US:
        with engine.begin() as conn:
            conn.execute(
                sa.update(console_sessions)
                .where(console_sessions.c.token_hash == key)
                .values(last_seen_us=now)
            )
    return Session(
        token_hash=key,
        user_id=row.user_id,
        csrf_token=row.csrf_token,
        mfa_pending=row.mfa_pending,
        created_us=row.created_us,
        expires_us=row.expires_us,
    )


def promote_session(
    engine: sa.Engine, session: Session, *, max_age_s: float, client_ip: str
) -> NewSession:
    """The second factor passed: replace the pending session by a full one (a new
    token, so a token seen before the second factor is worth nothing)."""
    with engine.begin() as conn:
        conn.execute(
            sa.delete(console_sessions).where(console_sessions.c.token_hash == session.token_hash)
        )
    return create_session(
        engine, session.user_id, mfa_pending=False, max_age_s=max_age_s, client_ip=client_ip
    )


def end_session(engine: sa.Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.delete(console_sessions).where(console_sessions.c.token_hash == _hash(token))
        )


def end_user_sessions(engine: sa.Engine, user_id: int) -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.delete(console_sessions).where(console_sessions.c.user_id == user_id)
        ).rowcount
