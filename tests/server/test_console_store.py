"""Console accounts and sessions in the store, on both backends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.schema import console_sessions, users
from sekimori.server.store.sessions import (
    create_session,
    end_user_sessions,
    load_session,
    promote_session,
)
from sekimori.server.store.users import (
    LOCKOUT_FAILURES,
    authenticate,
    create_user,
    get_user,
    record_totp_step,
    set_disabled,
)

PASSWORD = "a long enough password"


def test_users_are_created_with_their_groups_and_scope(engine: sa.Engine) -> None:
    admin = get_user(engine, create_user(engine, "root", PASSWORD, "administrator"))
    assert admin.all_groups and admin.scope.all_groups
    limited = get_user(
        engine, create_user(engine, "bob", PASSWORD, "operator", groups_=["sales", "hq"])
    )
    assert not limited.all_groups
    assert limited.groups == ("hq", "sales")
    assert len(limited.scope.group_ids) == 2
    nobody = get_user(engine, create_user(engine, "nogroups", PASSWORD, "viewer"))
    assert not nobody.scope.all_groups and not nobody.scope.group_ids
    with pytest.raises(ValueError, match="exists"):
        create_user(engine, "bob", PASSWORD, "viewer")
    with pytest.raises(ValueError, match="12 characters"):
        create_user(engine, "short", "tiny", "viewer")
    with pytest.raises(ValueError, match="user name"):
        create_user(engine, "bad name; drop", PASSWORD, "viewer")


def test_passwords_are_argon2id_hashes(engine: sa.Engine) -> None:
    create_user(engine, "amy", PASSWORD, "viewer")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_lockout_after_repeated_failures_then_the_right_password_fails_too(
    engine: sa.Engine,
) -> None:
    create_user(engine, "amy", PASSWORD, "viewer")
    outcomes = [authenticate(engine, "amy", "wrong!").outcome for _ in range(LOCKOUT_FAILURES)]
    assert outcomes[-1] == "locked"
    assert set(outcomes[:-1]) == {"bad_credentials"}
    assert authenticate(engine, "amy", PASSWORD).outcome == "locked"
    # When the lock has expired, the right password works and the counter resets.
    with engine.begin() as conn:
        conn.execute(sa.update(users).values(locked_until_us=now_us() - 1))
    assert authenticate(engine, "amy", PASSWORD).outcome == "ok"


def test_a_success_resets_the_failure_count(engine: sa.Engine) -> None:
    create_user(engine, "amy", PASSWORD, "viewer")
    for _ in range(LOCKOUT_FAILURES - 1):
        authenticate(engine, "amy", "wrong!")
    assert authenticate(engine, "amy", PASSWORD).outcome == "ok"
    for _ in range(LOCKOUT_FAILURES - 1):
        assert authenticate(engine, "amy", "wrong!").outcome == "bad_credentials"


def test_disabled_users_cannot_log_in_and_lose_their_sessions(engine: sa.Engine) -> None:
    uid = create_user(engine, "amy", PASSWORD, "viewer")
    new = create_session(engine, uid, mfa_pending=False, max_age_s=3600, client_ip="10.0.0.1")
    assert load_session(engine, new.token, idle_s=600) is not None
    set_disabled(engine, uid, True)
    assert authenticate(engine, "amy", PASSWORD).outcome == "disabled"
    assert load_session(engine, new.token, idle_s=600) is None


def test_sessions_expire_when_idle_or_old(engine: sa.Engine) -> None:
    uid = create_user(engine, "amy", PASSWORD, "viewer")
    idle = create_session(engine, uid, mfa_pending=False, max_age_s=3600, client_ip="")
    old = create_session(engine, uid, mfa_pending=False, max_age_s=3600, client_ip="")
    with engine.begin() as conn:
        conn.execute(
            sa.update(console_sessions)
            .where(console_sessions.c.token_hash == idle.session.token_hash)
            .values(last_seen_us=now_us() - 601 * 1_000_000)
        )
        conn.execute(
            sa.update(console_sessions)
            .where(console_sessions.c.token_hash == old.session.token_hash)
            .values(expires_us=now_us() - 1)
        )
    assert load_session(engine, idle.token, idle_s=600) is None
    assert load_session(engine, old.token, idle_s=600) is None
    assert load_session(engine, "", idle_s=600) is None
    assert load_session(engine, "x" * 500, idle_s=600) is None


def test_the_database_holds_only_token_hashes(engine: sa.Engine) -> None:
    uid = create_user(engine, "amy", PASSWORD, "viewer")
    new = create_session(engine, uid, mfa_pending=False, max_age_s=3600, client_ip="")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(console_sessions.c.token_hash)).scalars().all()
    assert new.token not in stored
    assert new.session.token_hash in stored


def test_promotion_after_the_second_factor_issues_a_new_token(engine: sa.Engine) -> None:
    uid = create_user(engine, "amy", PASSWORD, "viewer")
    pending = create_session(engine, uid, mfa_pending=True, max_age_s=300, client_ip="")
    full = promote_session(engine, pending.session, max_age_s=3600, client_ip="")
    assert full.token != pending.token
    assert load_session(engine, pending.token, idle_s=600) is None
    loaded = load_session(engine, full.token, idle_s=600)
    assert loaded is not None and not loaded.mfa_pending
    assert end_user_sessions(engine, uid) == 1
    assert load_session(engine, full.token, idle_s=600) is None


def test_a_totp_step_is_accepted_once(engine: sa.Engine) -> None:
    uid = create_user(engine, "amy", PASSWORD, "viewer")
    assert record_totp_step(engine, uid, 1000)
    assert not record_totp_step(engine, uid, 1000)
    assert not record_totp_step(engine, uid, 999)
    assert record_totp_step(engine, uid, 1001)
