"""Rule configuration in the store: built-in rules switched on or off, custom YAML rule
sources, imported Sigma rules, and the named lists rules refer to.

Every change bumps ``rules_revision`` in the same transaction; each server replica
polls the revision (``rules_revision``) and rebuilds its rule set when it moves, so a
change made in the console reaches every replica's ingest within a poll interval.

These functions store what they are given: validation (rules parse, lists referenced
exist) is the caller's (``sekimori.server.alerting.ruleset``), and so is the audit
entry (the console's ``ctx.audit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa

from sekimori.server.store.schema import rule_lists, rule_settings, rules_custom, rules_revision

__all__ = [
    "CustomRules",
    "RuleConfig",
    "RuleFormat",
    "RuleListInfo",
    "delete_custom_rules",
    "load_rule_config",
    "parse_list_entries",
    "rule_lists_info",
    "rules_revision_of",
    "save_custom_rules",
    "save_rule_list",
    "set_rule_enabled",
]

RuleFormat = Literal["yaml", "sigma"]
MAX_LIST_ENTRIES = 100_000
MAX_ENTRY_CHARS = 1024


@dataclass(frozen=True, slots=True)
class CustomRules:
    name: str
    format: RuleFormat
    source: str
    updated_us: int
    updated_by: str


@dataclass(frozen=True, slots=True)
class RuleConfig:
    revision: int
    # Rule id -> enabled, for rules switched in the console (absent: the rule's own).
    enabled: dict[str, bool] = field(default_factory=dict)
    custom: tuple[CustomRules, ...] = ()
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuleListInfo:
    """A stored list as the console shows it: its entries and who changed it when."""

    name: str
    entries: tuple[str, ...]
    updated_us: int
    updated_by: str


def parse_list_entries(text: str) -> list[str]:
    """Entries of a list given as text: one per line, blank lines and lines starting with ``#``
    ignored, surrounding space stripped, duplicates dropped (first kept).

    Raises ValueError for an entry longer than 1024 characters or more than 100,000
    entries (with the line number)."""
    entries: dict[str, None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(entry) > MAX_ENTRY_CHARS:
            raise ValueError(f"line {number}: entry longer than {MAX_ENTRY_CHARS} characters")
        if "\x00" in entry:
            raise ValueError(f"line {number}: entry contains a NUL character")
        entries[entry] = None
        if len(entries) > MAX_LIST_ENTRIES:
            raise ValueError(f"line {number}: more than {MAX_LIST_ENTRIES} entries")
    return list(entries)


def rules_revision_of(conn: sa.Connection) -> int:
    value = conn.execute(
        sa.select(rules_revision.c.revision).where(rules_revision.c.id == 1)
    ).scalar_one_or_none()
    return int(value or 0)


def _bump(conn: sa.Connection) -> int:
    updated = conn.execute(
        sa.update(rules_revision)
        .where(rules_revision.c.id == 1)
        .values(revision=rules_revision.c.revision + 1)
    )
    if updated.rowcount == 0:
        conn.execute(sa.insert(rules_revision).values(id=1, revision=1))
    return rules_revision_of(conn)


def load_rule_config(conn: sa.Connection) -> RuleConfig:
    """Everything a rule set is built from, with the revision it corresponds to (read
    in one transaction: call it inside ``engine.begin()`` or ``connect()``)."""
    revision = rules_revision_of(conn)
    enabled = {
        str(r.rule_id): bool(r.enabled)
        for r in conn.execute(sa.select(rule_settings.c.rule_id, rule_settings.c.enabled))
    }
    custom = tuple(
        CustomRules(
            name=str(r.name),
            format="sigma" if r.format == "sigma" else "yaml",
            source=str(r.source),
            updated_us=int(r.updated_us),
            updated_by=str(r.updated_by),
        )
        for r in conn.execute(sa.select(rules_custom).order_by(rules_custom.c.name))
    )
    lists = {
        str(r.name): tuple(line for line in str(r.entries).split("\n") if line)
        for r in conn.execute(sa.select(rule_lists.c.name, rule_lists.c.entries))
    }
    return RuleConfig(revision=revision, enabled=enabled, custom=custom, lists=lists)


def rule_lists_info(conn: sa.Connection) -> dict[str, RuleListInfo]:
    """Every stored list by name, with its last change."""
    return {
        str(r.name): RuleListInfo(
            name=str(r.name),
            entries=tuple(line for line in str(r.entries).split("\n") if line),
            updated_us=int(r.updated_us),
            updated_by=str(r.updated_by),
        )
        for r in conn.execute(sa.select(rule_lists).order_by(rule_lists.c.name))
    }


def _upsert(
    conn: sa.Connection, table: sa.Table, key: str, key_value: str, values: dict[str, object]
) -> None:
    updated = conn.execute(
        sa.update(table).where(table.c[key] == key_value).values(**values)
    ).rowcount
    if updated == 0:
        conn.execute(sa.insert(table).values({key: key_value, **values}))


def set_rule_enabled(
    conn: sa.Connection, rule_id: str, enabled: bool, *, actor: str, now_us: int
) -> int:
    """Switch a rule on or off; returns the new revision."""
    _upsert(
        conn,
        rule_settings,
        "rule_id",
        rule_id,
        {"enabled": enabled, "updated_us": now_us, "updated_by": actor},
    )
    return _bump(conn)


def save_rule_list(
    conn: sa.Connection, name: str, entries: list[str], *, actor: str, now_us: int
) -> int:
    """Replace a named list's entries (create it if new); returns the new revision."""
    for entry in entries:
        if "\n" in entry or "\r" in entry:
            raise ValueError("a list entry cannot contain a line break")
    _upsert(
        conn,
        rule_lists,
        "name",
        name,
        {"entries": "\n".join(entries), "updated_us": now_us, "updated_by": actor},
    )
    return _bump(conn)


def save_custom_rules(
    conn: sa.Connection,
    name: str,
    format: RuleFormat,
    source: str,
    *,
    actor: str,
    now_us: int,
) -> int:
    """Store (or replace) a custom rule source; returns the new revision."""
    _upsert(
        conn,
        rules_custom,
        "name",
        name,
        {"format": format, "source": source, "updated_us": now_us, "updated_by": actor},
    )
    return _bump(conn)


def delete_custom_rules(conn: sa.Connection, name: str) -> bool:
    """Remove a custom rule source; returns whether it existed."""
    gone = conn.execute(sa.delete(rules_custom).where(rules_custom.c.name == name)).rowcount > 0
    if gone:
        _bump(conn)
    return gone
