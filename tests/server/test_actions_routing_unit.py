"""Routing pieces without sockets: every device's Merkle proof in one pass equals the
protocol's own proof, and the in-process wake-up reaches only its own engine's
routers."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol.actions import merkle_proof, merkle_root, verify_merkle_proof
from sekimori.server.actions.routing import merkle_proofs
from sekimori.server.actions.wakeups import notify_ready, register_waker, unregister_waker

_ids = st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=70)


@given(_ids)
def test_all_proofs_at_once_match_the_protocol(device_ids: list[str]) -> None:
    proofs = merkle_proofs(device_ids)
    root = merkle_root(device_ids)
    assert set(proofs) == set(device_ids)
    for device_id, proof in proofs.items():
        assert proof == merkle_proof(device_ids, device_id)
        assert verify_merkle_proof(device_id, proof, root)


def test_a_ready_command_wakes_the_routers_of_its_engine_only() -> None:
    one, other = sa.create_engine("sqlite://"), sa.create_engine("sqlite://")
    woken: list[str] = []

    def wake_one() -> None:
        woken.append("one")

    def wake_other() -> None:
        woken.append("other")

    register_waker(one, wake_one)
    register_waker(other, wake_other)
    try:
        notify_ready(one)
        assert woken == ["one"]
        unregister_waker(one, wake_one)
        notify_ready(one)
        assert woken == ["one"]
    finally:
        unregister_waker(other, wake_other)
        one.dispose()
        other.dispose()
