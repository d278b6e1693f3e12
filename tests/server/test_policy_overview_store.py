"""What the console's policy pages read (groups with their current version, devices
behind it) and the editor's lost-update guard on save (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from sekimori.server.policies import validate_policy
from sekimori.server.store.audit import search_audit
from sekimori.server.store.policies import (
    StalePolicy,
    current_policy,
    record_applied,
    save_policy,
)
from sekimori.server.store.policy_overview import (
    GroupPolicy,
    PolicyDevice,
    devices_behind,
    group_policies,
)
from sekimori.server.store.schema import devices
from sekimori.server.store.scope import EVERYTHING, Scope
from tests.server.test_policies_store import NOW, _device, _group


def test_groups_with_their_current_version_within_scope(engine: sa.Engine) -> None:
    sales, hr, empty = _group(engine, "sales"), _group(engine, "hr"), _group(engine, "empty")
    policy = validate_policy({})
    save_policy(engine, sales, policy, "alice", now_us=NOW)
    save_policy(
        engine, sales, validate_policy({"retention_days": {"web": 9}}), "bob", now_us=NOW + 5
    )
    save_policy(engine, hr, policy, "carol", now_us=NOW + 7)
    assert group_policies(engine, EVERYTHING) == [
        GroupPolicy(empty, "empty", None, None, None),
        GroupPolicy(hr, "hr", 1, NOW + 7, "carol"),
        GroupPolicy(sales, "sales", 2, NOW + 5, "bob"),
    ]
    limited = Scope(all_groups=False, group_ids=frozenset({sales}))
    assert [g.name for g in group_policies(engine, limited)] == ["sales"]
    assert group_policies(engine, limited, group_id=hr) == []
    assert group_policies(engine, Scope(all_groups=False)) == []
    assert group_policies(engine, EVERYTHING, group_id=hr)[0].version == 1


def test_devices_behind_the_current_version(engine: sa.Engine) -> None:
    sales, hr = _group(engine, "sales"), _group(engine, "hr")
    for _ in range(3):
        save_policy(engine, sales, validate_policy({}), "alice", now_us=NOW)
    current = _device(engine, "pc-current", sales)
    old = _device(engine, "pc-old", sales)
    older = _device(engine, "pc-older", sales)
    _device(engine, "pc-silent", sales)
    gone = _device(engine, "pc-revoked", sales, revoked=True)
    moved = _device(engine, "pc-moved", hr)
    record_applied(engine, current, 3, now_us=NOW + 1)
    record_applied(engine, old, 2, now_us=NOW + 2)
    record_applied(engine, older, 1, now_us=NOW + 3)
    record_applied(engine, gone, 1, now_us=NOW + 4)
    record_applied(engine, moved, 3, now_us=NOW + 5)
    # The device moves to sales: its report was for hr's policy.
    with engine.begin() as conn:
        conn.execute(sa.update(devices).where(devices.c.id == moved).values(group_id=sales))

    assert devices_behind(engine, EVERYTHING, sales, 3) == [
        PolicyDevice("pc-moved", "pc-moved", None, None),
        PolicyDevice("pc-silent", "pc-silent", None, None),
        PolicyDevice("pc-older", "pc-older", 1, NOW + 3),
        PolicyDevice("pc-old", "pc-old", 2, NOW + 2),
    ]
    assert [d.hostname for d in devices_behind(engine, EVERYTHING, sales, 3, limit=2)] == [
        "pc-moved",
        "pc-silent",
    ]
    outside = Scope(all_groups=False, group_ids=frozenset({hr}))
    assert devices_behind(engine, outside, sales, 3) == []


def test_a_save_on_top_of_an_unseen_version_is_refused(engine: sa.Engine) -> None:
    group = _group(engine, "sales")
    first = validate_policy({"retention_days": {"web": 30}})
    assert save_policy(engine, group, first, "alice", now_us=NOW, expected_version=0) == 1
    with pytest.raises(StalePolicy) as refused:
        save_policy(engine, group, first, "bob", now_us=NOW, expected_version=0)
    assert refused.value.current == 1
    assert save_policy(engine, group, first, "bob", now_us=NOW, expected_version=1) == 2
    with pytest.raises(StalePolicy):
        save_policy(engine, group, first, "carol", now_us=NOW, expected_version=1)
    stored = current_policy(engine, group)
    assert stored is not None and (stored.version, stored.created_by) == (2, "bob")
    # A refused save leaves no audit entry.
    assert [e.actor for e in search_audit(engine, action="policy.save").entries] == [
        "bob",
        "alice",
    ]


def test_concurrent_saves_from_the_same_version_store_one(engine: sa.Engine) -> None:
    group = _group(engine, "sales")
    save_policy(engine, group, validate_policy({}), "alice", now_us=NOW)
    results: list[int | str] = []
    start = threading.Barrier(4)

    def editor(name: str, days: int) -> None:
        start.wait()
        policy = validate_policy({"retention_days": {"web": days}})
        try:
            results.append(save_policy(engine, group, policy, name, now_us=NOW, expected_version=1))
        except StalePolicy:
            results.append("stale")

    threads = [threading.Thread(target=editor, args=(f"admin{i}", 10 + i)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [2, "stale", "stale", "stale"]
    stored = current_policy(engine, group)
    assert stored is not None and stored.version == 2
