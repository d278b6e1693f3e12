"""Console accounts (the first administrator is created at initialisation)."""

from __future__ import annotations

import secrets
from typing import Literal

import sqlalchemy as sa
from argon2 import PasswordHasher

from sekimori.clock import now_us
from sekimori.server.store.schema import users

__all__ = ["ROLES", "Role", "create_user", "generate_password", "user_count"]

Role = Literal["administrator", "operator", "auditor", "viewer"]
ROLES: tuple[Role, ...] = ("administrator", "operator", "auditor", "viewer")

# argon2id with the library's defaults (RFC 9106 "second recommended" profile).
_hasher = PasswordHasher()


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def user_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())


def create_user(engine: sa.Engine, username: str, password: str, role: Role) -> int:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if len(password) < 12:
        raise ValueError("passwords are at least 12 characters")
    with engine.begin() as conn:
        result = conn.execute(
            sa.insert(users).values(
                username=username,
                password_hash=_hasher.hash(password),
                role=role,
                disabled=False,
                created_us=now_us(),
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # noqa: S101 - an INSERT always has one
        return int(key[0])
