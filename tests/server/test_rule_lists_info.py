"""rule_lists_info: each stored list with its entries and last change (the console's
lists pages), on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from sekimori.server.store.rule_config import (
    RuleListInfo,
    rule_lists_info,
    rules_revision_of,
    save_rule_list,
)


def test_lists_come_back_with_who_changed_them_when(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert rule_lists_info(conn) == {}
        save_rule_list(
            conn, "blocked_domains", ["a.example", "b.example"], actor="alice", now_us=10
        )
        save_rule_list(conn, "banned_software", [], actor="alice", now_us=20)
        save_rule_list(conn, "blocked_domains", ["c.example"], actor="grace", now_us=30)
    with engine.connect() as conn:
        assert rule_lists_info(conn) == {
            "banned_software": RuleListInfo("banned_software", (), 20, "alice"),
            "blocked_domains": RuleListInfo("blocked_domains", ("c.example",), 30, "grace"),
        }
        assert rules_revision_of(conn) == 3
