"""Console accounts: argon2id passwords, roles, device-group limits, TOTP, lockout.

The first administrator is created at initialisation and sees every group.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sekimori.clock import now_us
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import groups, user_groups, users
from sekimori.server.store.scope import Scope

__all__ = [
    "LOCKOUT_FAILURES",
    "LOCKOUT_SECONDS",
    "ROLES",
    "LoginResult",
    "Role",
    "User",
    "UserNotFound",
    "authenticate",
    "create_user",
    "generate_password",
    "get_user",
    "get_user_by_name",
    "group_names",
    "list_users",
    "mark_logged_in",
    "record_totp_step",
    "set_access",
    "set_disabled",
    "set_locale",
    "set_password",
    "set_totp_secret",
    "totp_secret",
    "user_count",
    "validate_password",
    "validate_username",
]

Role = Literal["administrator", "operator", "auditor", "viewer"]
ROLES: tuple[Role, ...] = ("administrator", "operator", "auditor", "viewer")

# After this many wrong passwords in a row the account is locked for LOCKOUT_SECONDS
# (an online guesser gets 5 tries per quarter hour; the owner waits, nothing more).
LOCKOUT_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60

# argon2id with the library's defaults (RFC 9106 "second recommended" profile).
_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Role
    disabled: bool
    all_groups: bool
    groups: tuple[str, ...]
    group_ids: frozenset[int]
    totp_enabled: bool
    locale: str | None
    created_us: int
    last_login_us: int | None
    locked_until_us: int | None

    @property
    def scope(self) -> Scope:
        return Scope(all_groups=self.all_groups, group_ids=self.group_ids)


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def validate_username(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise ValueError("a user name is 1-64 letters, digits or . _ - @")
    return name


def validate_password(password: str) -> str:
    if len(password) < 12:
        raise ValueError("passwords are at least 12 characters")
    if len(password) > 1024:
        raise ValueError("passwords are at most 1024 characters")
    return password


def user_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())


def create_user(
    engine: sa.Engine,
    username: str,
    password: str,
    role: Role,
    *,
    groups_: list[str] | None = None,
    all_groups: bool | None = None,
) -> int:
    """Create an account. Administrators see every group unless groups are given;
    other roles see only ``groups_`` (created if missing)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    username = validate_username(username)
    validate_password(password)
    if all_groups is None:
        all_groups = role == "administrator" and not groups_
    with engine.begin() as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
            raise ValueError(f"user {username!r} exists already")
        result = conn.execute(
            sa.insert(users).values(
                username=username,
                password_hash=_hasher.hash(password),
                role=role,
                disabled=False,
                created_us=now_us(),
                all_groups=all_groups,
                failed_logins=0,
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # noqa: S101 - an INSERT always has one
        user_id = int(key[0])
        for name in groups_ or []:
            conn.execute(
                sa.insert(user_groups).values(user_id=user_id, group_id=ensure_group(conn, name))
            )
        return user_id


def _load(conn: sa.Connection, where: sa.ColumnElement[bool]) -> User:
    row = conn.execute(sa.select(users).where(where)).first()
    if row is None:
        raise UserNotFound("no such user")
    member = conn.execute(
        sa.select(groups.c.id, groups.c.name)
        .join(user_groups, user_groups.c.group_id == groups.c.id)
        .where(user_groups.c.user_id == row.id)
        .order_by(groups.c.name)
    ).all()
    return User(
        id=row.id,
        username=row.username,
        role=row.role,
        disabled=row.disabled,
        all_groups=row.all_groups,
        groups=tuple(m.name for m in member),
        group_ids=frozenset(m.id for m in member),
        totp_enabled=row.totp_secret is not None,
        locale=row.locale,
        created_us=row.created_us,
        last_login_us=row.last_login_us,
        locked_until_us=row.locked_until_us,
    )


def get_user(engine: sa.Engine, user_id: int) -> User:
    with engine.connect() as conn:
        return _load(conn, users.c.id == user_id)


def get_user_by_name(engine: sa.Engine, username: str) -> User:
    with engine.connect() as conn:
        return _load(conn, users.c.username == username)


def list_users(engine: sa.Engine) -> list[User]:
    with engine.connect() as conn:
        ids = conn.execute(sa.select(users.c.id).order_by(users.c.username)).scalars().all()
        return [_load(conn, users.c.id == i) for i in ids]


LoginOutcome = Literal["ok", "bad_credentials", "locked", "disabled"]


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: LoginOutcome
    user: User | None = None


def authenticate(engine: sa.Engine, username: str, password: str) -> LoginResult:
    """Check a password, counting failures and locking the account after
    LOCKOUT_FAILURES in a row. Unknown names cost the same hash as known ones."""
    now = now_us()
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                users.c.id,
                users.c.password_hash,
                users.c.disabled,
                users.c.locked_until_us,
            ).where(users.c.username == username)
        ).first()
    if row is None:
        _verify(_DUMMY_HASH, password)
        return LoginResult("bad_credentials")
    if row.locked_until_us is not None and row.locked_until_us > now:
        _verify(_DUMMY_HASH, password)
        return LoginResult("locked")
    if not _verify(row.password_hash, password):
        with engine.begin() as conn:
            conn.execute(
                sa.update(users)
                .where(users.c.id == row.id)
                .values(failed_logins=users.c.failed_logins + 1)
            )
            failures = conn.execute(
                sa.select(users.c.failed_logins).where(users.c.id == row.id)
            ).scalar_one()
            if failures >= LOCKOUT_FAILURES:
                conn.execute(
                    sa.update(users)
                    .where(users.c.id == row.id)
                    .values(failed_logins=0, locked_until_us=now + LOCKOUT_SECONDS * 1_000_000)
                )
                return LoginResult("locked")
        return LoginResult("bad_credentials")
    if row.disabled:
        return LoginResult("disabled")
    with engine.begin() as conn:
        values: dict[str, object] = {"failed_logins": 0, "locked_until_us": None}
        if _hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = _hasher.hash(password)
        conn.execute(sa.update(users).where(users.c.id == row.id).values(**values))
    return LoginResult("ok", get_user(engine, row.id))


def mark_logged_in(engine: sa.Engine, user_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(users).where(users.c.id == user_id).values(last_login_us=now_us()))


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _update(engine: sa.Engine, user_id: int, **values: object) -> None:
    with engine.begin() as conn:
        if (
            conn.execute(sa.update(users).where(users.c.id == user_id).values(**values)).rowcount
            != 1
        ):
            raise UserNotFound("no such user")


def set_password(engine: sa.Engine, user_id: int, password: str) -> None:
    validate_password(password)
    _update(
        engine,
        user_id,
        password_hash=_hasher.hash(password),
        failed_logins=0,
        locked_until_us=None,
    )


def set_disabled(engine: sa.Engine, user_id: int, disabled: bool) -> None:
    _update(engine, user_id, disabled=disabled)


def set_locale(engine: sa.Engine, user_id: int, locale: str | None) -> None:
    _update(engine, user_id, locale=locale)


def set_totp_secret(engine: sa.Engine, user_id: int, secret: str | None) -> None:
    _update(engine, user_id, totp_secret=secret, totp_last_step=None)


def totp_secret(engine: sa.Engine, user_id: int) -> tuple[str | None, int | None]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(users.c.totp_secret, users.c.totp_last_step).where(users.c.id == user_id)
        ).one()
    return row.totp_secret, row.totp_last_step


def record_totp_step(engine: sa.Engine, user_id: int, step: int) -> bool:
    """Remember the accepted time step; False if it (or a later one) was used already,
    so a code seen over a shoulder cannot be replayed."""
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(users)
            .where(
                users.c.id == user_id,
                sa.or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
            )
            .values(totp_last_step=step)
        )
        return done.rowcount == 1


def set_access(
    engine: sa.Engine, user_id: int, *, role: Role, all_groups: bool, groups_: list[str]
) -> None:
    """Replace a user's role and device groups (groups created if missing; ignored
    when ``all_groups``). Takes effect on the user's next request."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    with engine.begin() as conn:
        changed = conn.execute(
            sa.update(users).where(users.c.id == user_id).values(role=role, all_groups=all_groups)
        ).rowcount
        if changed != 1:
            raise UserNotFound("no such user")
        conn.execute(sa.delete(user_groups).where(user_groups.c.user_id == user_id))
        if not all_groups:
            for group_id in {ensure_group(conn, name) for name in groups_}:
                conn.execute(sa.insert(user_groups).values(user_id=user_id, group_id=group_id))


def group_names(engine: sa.Engine) -> list[str]:
    """Every device group's name, for choosing a user's groups."""
    with engine.connect() as conn:
        return list(conn.execute(sa.select(groups.c.name).order_by(groups.c.name)).scalars())
