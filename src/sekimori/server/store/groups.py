"""Device groups: the unit that policies, tokens and console permissions apply to."""

from __future__ import annotations

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.schema import groups

__all__ = ["ensure_group", "validate_group_name"]

DEFAULT_GROUP = "default"


def validate_group_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
        raise ValueError("a group name is 1-128 printable characters")
    return name


def ensure_group(conn: sa.Connection, name: str) -> int:
    """The id of group ``name``, created if missing (race-safe)."""
    name = validate_group_name(name)
    found = conn.execute(sa.select(groups.c.id).where(groups.c.name == name)).scalar()
    if found is not None:
        return int(found)
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(groups).values(name=name, created_us=now_us()))
    except sa.exc.IntegrityError:
        pass  # created concurrently by another writer: fall through and read it
    return int(conn.execute(sa.select(groups.c.id).where(groups.c.name == name)).scalar_one())
