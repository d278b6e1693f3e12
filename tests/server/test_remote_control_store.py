"""Which console user may control which PC: ``store.remote_control.control_grant``
finds a ``remote_control`` command of that user for that device, signed, answered
``done`` by the PC, within its ``max_seconds`` — and nothing else (SQLite and
PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.actions import LockParams, RemoteControlParams
from sekimori.server import actions as service
from sekimori.server.store import actions as store
from sekimori.server.store.remote_control import control_grant
from tests.operators import Operator
from tests.server.test_actions_service import DEVICES, _add_devices

PC, OTHER = DEVICES[0], DEVICES[1]
OLGA = Operator("olga")


@pytest.fixture(name="db")
def db_fixture(engine: sa.Engine) -> sa.Engine:
    _add_devices(engine, [PC, OTHER])
    service.init_keyring(engine, [OLGA.key], 1, 10, "root")
    return engine


def _command(
    engine: sa.Engine,
    params: object,
    *,
    user: str = "alice",
    sign: bool = True,
    result: str | None = "done",
    finished_us: int | None = None,
) -> str:
    nonce = service.create_command(engine, params, [PC], requested_by=user)  # type: ignore[arg-type]
    if sign:
        view = service.command_view(engine, nonce)
        service.add_command_signature(engine, nonce, OLGA.sign(view.digest), OLGA.name)
    if result is not None:
        with engine.begin() as conn:
            assert store.claim_target(conn, nonce, PC, now_us())
            assert store.record_result(
                conn,
                nonce,
                PC,
                state=result,
                reason="",
                exit_code=None,
                output="",
                data_sha256=None,
                data_size=None,
                now_us=finished_us or now_us(),
            )
    return nonce


def test_a_signed_command_the_pc_ran_grants_its_requester_until_max_seconds(
    db: sa.Engine,
) -> None:
    finished = now_us()
    nonce = _command(db, RemoteControlParams(max_seconds=120), finished_us=finished)
    grant = control_grant(db, PC, "alice", now_us())
    assert grant is not None
    assert (grant.nonce, grant.granted_at_us, grant.until_us) == (
        nonce,
        finished,
        finished + 120_000_000,
    )
    assert grant.signers == ("olga",)
    assert control_grant(db, PC, "alice", finished + 120_000_000) is None  # over
    assert control_grant(db, PC, "bob", now_us()) is None  # another user
    assert control_grant(db, OTHER, "alice", now_us()) is None  # another PC


@pytest.mark.parametrize(
    ("params", "sign", "result"),
    [
        (RemoteControlParams(), True, "failed"),  # the PC's user declined
        (RemoteControlParams(), True, "refused"),  # the agent refused it
        (RemoteControlParams(), True, None),  # not answered yet
        (RemoteControlParams(), False, None),  # not signed (never sent)
        (LockParams(), True, "done"),  # another action
    ],
)
def test_nothing_else_grants_control(
    db: sa.Engine, params: object, sign: bool, result: str | None
) -> None:
    _command(db, params, sign=sign, result=result)
    assert control_grant(db, PC, "alice", now_us()) is None


def test_the_newest_running_grant_wins(db: sa.Engine) -> None:
    old = now_us() - 100_000_000
    _command(db, RemoteControlParams(max_seconds=60), finished_us=old)  # over by now
    newer = _command(db, RemoteControlParams(max_seconds=600))
    grant = control_grant(db, PC, "alice", now_us())
    assert grant is not None and grant.nonce == newer
