"""Targets of a console action resolved within the user's scope (SQLite and
PostgreSQL): by id, by host name, by group; revoked PCs and other groups' PCs are
reported as unknown; result counts per command only over the PCs in scope."""

from __future__ import annotations

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.actions import MessageParams
from sekimori.server import actions as service
from sekimori.server.store.action_scope import (
    hostnames_in_scope,
    resolve_targets,
    target_state_counts,
)
from sekimori.server.store.groups import ensure_group
from sekimori.server.store.schema import devices
from sekimori.server.store.scope import EVERYTHING, Scope
from tests.console.seed import add_device


def _scope(engine: sa.Engine, *names: str) -> Scope:
    with engine.begin() as conn:
        return Scope(all_groups=False, group_ids=frozenset(ensure_group(conn, n) for n in names))


def test_targets_stay_within_the_scope(engine: sa.Engine) -> None:
    a = add_device(engine, "sales-a", group="sales")
    b = add_device(engine, "sales-b", group="sales")
    hr = add_device(engine, "hr-a", group="hr")
    gone = add_device(engine, "sales-gone", group="sales")
    with engine.begin() as conn:
        conn.execute(sa.update(devices).where(devices.c.id == gone).values(revoked_us=now_us()))
    sales = _scope(engine, "sales")

    found = resolve_targets(engine, sales, names=[a, "sales-b", hr, "hr-a", gone, "nope"])
    assert [d.id for d in found.devices] == [a, b]
    assert found.unknown == [hr, "hr-a", gone, "nope"]

    by_group = resolve_targets(engine, sales, group="sales")
    assert {d.id for d in by_group.devices} == {a, b}
    assert not by_group.group_refused
    assert resolve_targets(engine, sales, group="hr").group_refused
    assert resolve_targets(engine, sales, group="missing").group_refused
    everything = resolve_targets(engine, EVERYTHING, group="hr")
    assert [d.hostname for d in everything.devices] == ["hr-a"]

    assert hostnames_in_scope(engine, sales, [a, hr, gone]) == {a: "sales-a", gone: "sales-gone"}


def test_result_counts_cover_only_the_scope(engine: sa.Engine) -> None:
    a = add_device(engine, "sales-a", group="sales")
    hr = add_device(engine, "hr-a", group="hr")
    nonce = service.create_command(engine, MessageParams(text="hi"), [a, hr], requested_by="alice")
    assert target_state_counts(engine, EVERYTHING, [nonce]) == {nonce: {"pending": 2}}
    assert target_state_counts(engine, _scope(engine, "sales"), [nonce]) == {nonce: {"pending": 1}}
    assert target_state_counts(engine, _scope(engine, "other"), [nonce]) == {nonce: {}}
    assert target_state_counts(engine, EVERYTHING, []) == {}
