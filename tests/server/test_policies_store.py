"""Versioned policies, applied versions and the retention purge (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from sekimori.server.policies import validate_policy
from sekimori.server.store.audit import search_audit, verify_chain
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.policies import (
    PolicyVersionCount,
    UnknownGroup,
    current_policy,
    devices_by_policy_version,
    policy_history,
    purge_expired,
    record_applied,
    retention_by_group,
    save_policy,
)
from sekimori.server.store.schema import devices, events
from sekimori.server.store.scope import EVERYTHING, Scope

DAY = 86_400_000_000
NOW = 1_800_000_000_000_000


def _group(engine: sa.Engine, name: str) -> int:
    with engine.begin() as conn:
        return ensure_group(conn, name)


def _device(engine: sa.Engine, device_id: str, group_id: int, *, revoked: bool = False) -> str:
    """A device (its id is also its host name) in group ``group_id``; returns the id."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(devices).values(
                id=device_id,
                hostname=device_id,
                os="linux",
                os_version="x",
                agent_version="0.1.0",
                group_id=group_id,
                cert_serial=device_id,
                enrolled_us=NOW,
                connected=False,
                revoked_us=NOW if revoked else None,
                acked_seq=0,
                outbox_events=0,
                dropped_total=0,
            )
        )
    return device_id


def _events(engine: sa.Engine, device_id: str, kind: str, times: list[int], first: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(events),
            [
                {
                    "device_id": device_id,
                    "seq": first + i,
                    "time_us": t,
                    "received_us": t,
                    "kind": kind,
                    "os_user": "alice",
                    "payload": "{}",
                }
                for i, t in enumerate(times)
            ],
        )


def _count(engine: sa.Engine, device_id: str, kind_prefix: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(events)
                .where(events.c.device_id == device_id, events.c.kind.like(kind_prefix + "%"))
            ).scalar_one()
        )


def test_versions_history_and_audit(engine: sa.Engine) -> None:
    group = _group(engine, "sales")
    assert current_policy(engine, group) is None
    first = validate_policy({"retention_days": {"web": 30}})
    second = validate_policy(
        {"retention_days": {"web": 60}, "collectors": {"window": {"enabled": False}}}
    )
    assert save_policy(engine, group, first, "alice", comment="start", now_us=NOW) == 1
    assert save_policy(engine, group, second, "bob", now_us=NOW + 1) == 2
    stored = current_policy(engine, group)
    assert stored is not None
    assert (stored.version, stored.created_by, stored.policy) == (2, "bob", second)
    history = policy_history(engine, group)
    assert [(p.version, p.comment, p.policy) for p in history] == [
        (2, "", second),
        (1, "start", first),
    ]
    entries = search_audit(engine, action="policy.save").entries
    assert [e.actor for e in entries] == ["bob", "alice"]
    detail = json.loads(entries[0].detail)
    assert detail["version"] == 2
    assert detail["changes"] == [
        {"path": "collectors.window.enabled", "old": True, "new": False},
        {"path": "retention_days.web", "old": 30, "new": 60},
    ]
    assert entries[0].target == f"group:{group}"
    assert verify_chain(engine).intact


def test_groups_have_separate_versions(engine: sa.Engine) -> None:
    a, b = _group(engine, "a"), _group(engine, "b")
    policy = validate_policy({})
    assert save_policy(engine, a, policy, "x", now_us=NOW) == 1
    assert save_policy(engine, b, policy, "x", now_us=NOW) == 1
    assert save_policy(engine, a, policy, "x", now_us=NOW) == 2


def test_unknown_group(engine: sa.Engine) -> None:
    with pytest.raises(UnknownGroup):
        save_policy(engine, 999_999, validate_policy({}), "x", now_us=NOW)
    assert search_audit(engine, action="policy.save").total == 0


def test_concurrent_saves_get_distinct_versions(engine: sa.Engine) -> None:
    group = _group(engine, "race")
    versions: list[int] = []
    barrier = threading.Barrier(4)

    def save(i: int) -> None:
        barrier.wait()
        policy = validate_policy({"retention_days": {"web": i + 1}})
        versions.append(save_policy(engine, group, policy, f"user{i}", now_us=NOW))

    threads = [threading.Thread(target=save, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [1, 2, 3, 4]
    assert search_audit(engine, action="policy.save").total == 4
    assert verify_chain(engine).intact


def test_applied_versions_per_group(engine: sa.Engine) -> None:
    a, b = _group(engine, "a"), _group(engine, "b")
    for device_id, group in [("d1", a), ("d2", a), ("d3", a), ("d4", b)]:
        _device(engine, device_id, group)
    _device(engine, "gone", a, revoked=True)
    policy = validate_policy({})
    save_policy(engine, a, policy, "x", now_us=NOW)
    save_policy(engine, a, policy, "x", now_us=NOW)
    assert record_applied(engine, "d1", 1, now_us=NOW)
    assert record_applied(engine, "d1", 2, now_us=NOW + 1)  # a later report replaces it
    assert record_applied(engine, "d2", 1, now_us=NOW)
    assert record_applied(engine, "gone", 2, now_us=NOW)
    assert not record_applied(engine, "nobody", 1, now_us=NOW)
    assert devices_by_policy_version(engine, EVERYTHING) == [
        PolicyVersionCount(group_id=a, version=None, devices=1, current=2),
        PolicyVersionCount(group_id=a, version=1, devices=1, current=2),
        PolicyVersionCount(group_id=a, version=2, devices=1, current=2),
        PolicyVersionCount(group_id=b, version=None, devices=1, current=None),
    ]
    only_b = Scope(all_groups=False, group_ids=frozenset({b}))
    assert devices_by_policy_version(engine, only_b) == [
        PolicyVersionCount(group_id=b, version=None, devices=1, current=None)
    ]
    # A device moved to another group runs none of its new group's versions yet.
    with engine.begin() as conn:
        conn.execute(sa.update(devices).where(devices.c.id == "d1").values(group_id=b))
    assert PolicyVersionCount(group_id=b, version=None, devices=2, current=None) in (
        devices_by_policy_version(engine, EVERYTHING)
    )


def test_purge_deletes_only_expired_events_of_the_domain_and_group(engine: sa.Engine) -> None:
    a, b = _group(engine, "a"), _group(engine, "b")
    _device(engine, "pa", a)
    _device(engine, "pb", b)
    old, fresh = NOW - 40 * DAY, NOW - 10 * DAY
    for device_id in ("pa", "pb"):
        _events(engine, device_id, "web.visit", [old] * 25 + [fresh] * 5, first=1)
        _events(engine, device_id, "window.focus", [old] * 3, first=100)
    counts = purge_expired(engine, {(a, "web"): 30}, NOW, chunk=7)
    assert counts == {(a, "web"): 25}
    assert _count(engine, "pa", "web.") == 5
    assert _count(engine, "pa", "window.") == 3  # another domain: kept
    assert _count(engine, "pb", "web.") == 30  # another group: kept
    entries = search_audit(engine, action="retention.purge").entries
    assert len(entries) == 1
    assert json.loads(entries[0].detail)["deleted"] == [
        {"group_id": a, "domain": "web", "days": 30, "events": 25}
    ]
    # Nothing left to purge: nothing deleted, no audit entry.
    assert purge_expired(engine, {(a, "web"): 30}, NOW) == {}
    assert search_audit(engine, action="retention.purge").total == 1
    assert verify_chain(engine).intact


def test_purge_uses_the_current_policies(engine: sa.Engine) -> None:
    group = _group(engine, "g")
    _device(engine, "p", group)
    _events(engine, "p", "file.created", [NOW - 3 * DAY, NOW - DAY // 2], first=1)
    save_policy(engine, group, validate_policy({"retention_days": {"file": 30}}), "x", now_us=NOW)
    save_policy(engine, group, validate_policy({"retention_days": {"file": 1}}), "x", now_us=NOW)
    retention = retention_by_group(engine)
    assert retention == {(group, "file"): 1}
    assert purge_expired(engine, retention, NOW) == {(group, "file"): 1}
    assert _count(engine, "p", "file.") == 1


def test_purge_refuses_bad_retention(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="domain"):
        purge_expired(engine, {(1, "mail"): 3}, NOW)
    with pytest.raises(ValueError, match="days"):
        purge_expired(engine, {(1, "web"): 0}, NOW)
