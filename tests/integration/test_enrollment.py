"""Enrollment against a real server: one-time expiring tokens, CA pinning."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sekimori.agent.enroll import EnrollmentError, enroll
from sekimori.agent.identity import Identity
from tests.processes import ServerProcess


def test_enrolled_identity_is_bound_to_a_key_made_on_the_pc(
    server: ServerProcess, tmp_path: Path
) -> None:
    identity = server.enroll(tmp_path / "pc1")
    assert Identity.load(tmp_path / "pc1") == identity
    assert (identity.key_path.stat().st_mode & 0o777) == 0o600
    row = server.scalar("SELECT count(*) FROM devices WHERE id = :id", id=identity.device_id)
    assert row == 1


def test_token_is_single_use(server: ServerProcess, tmp_path: Path) -> None:
    token = server.token()
    enroll(tmp_path / "a", server.url, token, server.fingerprint)
    with pytest.raises(EnrollmentError, match="already used"):
        enroll(tmp_path / "b", server.url, token, server.fingerprint)


def test_expired_token_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    token = server.token(ttl=0.2)
    time.sleep(0.3)
    with pytest.raises(EnrollmentError, match="expired"):
        enroll(tmp_path / "a", server.url, token, server.fingerprint)


def test_unknown_token_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    with pytest.raises(EnrollmentError, match="unknown enrollment token"):
        enroll(tmp_path / "a", server.url, "sek_not-a-real-token", server.fingerprint)


def test_token_for_another_group_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    token = server.token(group="finance")
    with pytest.raises(EnrollmentError, match="for group 'finance', not 'sales'"):
        enroll(tmp_path / "a", server.url, token, server.fingerprint, group="sales")
    # A refused attempt does not burn the token.
    identity = enroll(tmp_path / "b", server.url, token, server.fingerprint, group="finance")
    assert (
        server.scalar(
            "SELECT count(*) FROM devices d JOIN groups g ON g.id = d.group_id "
            "WHERE d.id = :id AND g.name = 'finance'",
            id=identity.device_id,
        )
        == 1
    )


def test_wrong_ca_fingerprint_never_sends_the_token(server: ServerProcess, tmp_path: Path) -> None:
    token = server.token()
    with pytest.raises(EnrollmentError, match="not the pinned"):
        enroll(tmp_path / "a", server.url, token, "ab" * 32)
    # The token was never presented, so it still works with the right pin.
    enroll(tmp_path / "b", server.url, token, server.fingerprint)
    assert server.scalar("SELECT count(*) FROM devices") == 1


def test_malformed_fingerprint_and_url_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EnrollmentError, match="64 hexadecimal digits"):
        enroll(tmp_path / "a", "wss://localhost:1", "t", "xyz")
    with pytest.raises(EnrollmentError, match="must start with wss://"):
        enroll(tmp_path / "a", "http://localhost:1", "t", "ab" * 32)


def test_enroll_cli_reports_refusal_without_traceback(
    server: ServerProcess, tmp_path: Path
) -> None:
    result = server.cli(
        "agent",
        "enroll",
        "--server",
        server.url,
        "--token",
        "sek_bogus",
        "--ca-fingerprint",
        f"SHA256:{server.fingerprint}",
        "--state-dir",
        str(tmp_path / "x"),
    )
    assert result.returncode == 1
    assert "unknown enrollment token" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_create_cli_prints_the_enroll_command(server: ServerProcess) -> None:
    result = server.cli("token", "create", "--group", "hr", "--expires", "2h")
    assert result.returncode == 0, result.stderr
    assert "sekimori agent enroll --server wss://" in result.stdout
    assert f"--ca-fingerprint SHA256:{server.fingerprint}" in result.stdout
    assert (
        server.scalar(
            "SELECT count(*) FROM enrollment_tokens t JOIN groups g ON g.id = t.group_id "
            "WHERE g.name = 'hr'"
        )
        == 1
    )
