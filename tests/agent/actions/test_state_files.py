"""The agent's action state files, for real on disk: the pinned keyring and its
chain of signed steps, the local action policy, the hash-chained local log — and
the CLI that reads them (``sekimori agent actions-log``, ``trust-operators``).
Parsers get arbitrary bytes (hypothesis): a clear error, never a crash or a change."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekimori.agent.actions.audit_log import LOG_FILE, ActionLog, verify_log
from sekimori.agent.actions.keyring import (
    OPERATORS_FILE,
    KeyringError,
    apply_chain,
    load_keyring,
    parse_fingerprint,
    pin_keyring,
)
from sekimori.agent.actions.local_policy import (
    POLICY_FILE,
    LocalActionPolicy,
    LocalPolicyError,
    load_local_policy,
    policy_from_flags,
    write_local_policy,
)
from sekimori.cli.main import main
from sekimori.protocol.signing import encode_signed_keyring, keyring_fingerprint
from tests.operators import Operator, keyring, signed_keyring

alice, bob, carol = Operator("alice"), Operator("bob"), Operator("carol")


def _pinned_v1(state: Path, quorum: int = 1) -> bytes:
    body = keyring([alice, bob], quorum=quorum)
    pin_keyring(state, encode_signed_keyring(signed_keyring(body)), keyring_fingerprint(body))
    return body


# ---- keyring -------------------------------------------------------------------------


def test_pin_refuses_another_fingerprint_and_writes_nothing(tmp_path: Path) -> None:
    body = keyring([alice])
    raw = encode_signed_keyring(signed_keyring(body))
    with pytest.raises(KeyringError, match="not the pinned"):
        pin_keyring(tmp_path, raw, "SHA256:" + "0" * 64)
    assert not (tmp_path / OPERATORS_FILE).exists()
    pinned = pin_keyring(tmp_path, raw, "sha256:" + keyring_fingerprint(body).upper())
    assert pinned.version == 1
    assert (tmp_path / OPERATORS_FILE).stat().st_mode & 0o777 == 0o600


def test_a_chain_is_applied_step_by_step_and_stops_at_a_bad_step(tmp_path: Path) -> None:
    v1 = _pinned_v1(tmp_path, quorum=2)
    v2 = keyring([alice, bob, carol], version=2, previous=v1, quorum=2)
    v3 = keyring([alice, carol], version=3, previous=v2, quorum=1)
    v4 = keyring([carol], version=4, previous=v3)
    current = load_keyring(tmp_path)
    chain = [
        signed_keyring(v1),  # already pinned: skipped
        signed_keyring(v2, by=[alice, bob]),
        signed_keyring(v3, by=[alice, carol]),
        signed_keyring(v4, by=[bob]),  # bob is no longer in v3
    ]
    result = apply_chain(tmp_path, current, chain)
    assert not result.ok
    assert "version 4" in result.error and "not a pinned operator key" in result.error
    kept = load_keyring(tmp_path)
    assert kept is not None and kept.version == 3


def test_a_step_short_of_the_quorum_changes_nothing(tmp_path: Path) -> None:
    v1 = _pinned_v1(tmp_path, quorum=2)
    v2 = keyring([alice], version=2, previous=v1)
    before = (tmp_path / OPERATORS_FILE).read_bytes()
    result = apply_chain(tmp_path, load_keyring(tmp_path), [signed_keyring(v2, by=[alice])])
    assert not result.ok and "2 needed" in result.error
    assert (tmp_path / OPERATORS_FILE).read_bytes() == before


def test_without_a_pinned_keyring_no_chain_is_trusted(tmp_path: Path) -> None:
    v1 = keyring([alice])
    result = apply_chain(tmp_path, None, [signed_keyring(v1)])
    assert (result.ok, result.error) == (False, "no operator keyring pinned on this PC")
    assert not (tmp_path / OPERATORS_FILE).exists()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_any_operators_file_is_a_keyring_or_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / OPERATORS_FILE).write_bytes(data)
        try:
            pinned = load_keyring(Path(tmp))
        except KeyringError as exc:
            assert "is not a valid keyring" in str(exc)
        else:
            assert pinned is not None and pinned.version >= 1


@given(st.text(max_size=80))
def test_fingerprint_parsing(text: str) -> None:
    try:
        value = parse_fingerprint(text)
    except KeyringError:
        return
    assert len(value) == 64 and set(value) <= set("0123456789abcdef")


# ---- local policy --------------------------------------------------------------------


def test_missing_policy_file_means_the_defaults(tmp_path: Path) -> None:
    policy = load_local_policy(tmp_path)
    assert policy == LocalActionPolicy()
    assert not policy.allows("remote_control") and policy.allows("lock")
    assert policy.allow_unsigned_low_risk
    assert not policy.may_collect("/etc/passwd")


def test_enrollment_flags_become_the_policy(tmp_path: Path) -> None:
    policy = policy_from_flags(
        allow_actions="message, lock,kill_process",
        remote_control=True,
        collect_paths=["/home/*/Documents/*"],
        deny_paths=["*.key"],
        max_collect_bytes=1000,
    )
    write_local_policy(tmp_path, policy)
    loaded = load_local_policy(tmp_path)
    assert loaded.allowed_actions == ["message", "lock", "kill_process", "remote_control"]
    assert loaded.may_collect("/home/ann/Documents/report.pdf")
    assert not loaded.may_collect("/home/ann/Documents/id.key")
    assert not loaded.may_collect("/etc/shadow")
    assert (tmp_path / POLICY_FILE).stat().st_mode & 0o777 == 0o600
    with pytest.raises(LocalPolicyError, match="unknown action 'format_disk'"):
        policy_from_flags(
            allow_actions="format_disk",
            remote_control=False,
            collect_paths=[],
            deny_paths=[],
            max_collect_bytes=None,
        )
    with pytest.raises(LocalPolicyError, match="collect_paths"):
        policy_from_flags(
            allow_actions=None,
            remote_control=False,
            collect_paths=["relative/*"],
            deny_paths=[],
            max_collect_bytes=None,
        )


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.dictionaries(
            st.sampled_from(
                [
                    "allowed_actions",
                    "allow_unsigned_low_risk",
                    "collect_paths",
                    "deny_paths",
                    "max_collect_bytes",
                    "other",
                ]
            ),
            st.one_of(
                st.booleans(),
                st.integers(),
                st.text(max_size=20),
                st.lists(st.sampled_from(["message", "lock", "nope", "/a/*", ""]), max_size=4),
            ),
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_any_policy_file_is_a_policy_or_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / POLICY_FILE).write_bytes(data)
        try:
            policy = load_local_policy(Path(tmp))
        except LocalPolicyError as exc:
            assert "invalid local action policy" in str(exc)
        else:
            assert isinstance(policy, LocalActionPolicy)


# ---- local log -----------------------------------------------------------------------


def _write_log(state: Path, lines: int = 4) -> Path:
    log = ActionLog(state / LOG_FILE)
    for i in range(lines):
        log.append(
            "received" if i % 2 == 0 else "done",
            nonce=f"{i:032x}",
            action="lock",
            signers=["alice"],
            requested_by="admin",
        )
    return state / LOG_FILE


def test_the_chain_verifies_and_survives_a_reopen(tmp_path: Path) -> None:
    path = _write_log(tmp_path, 3)
    ActionLog(path).append("refused", nonce="f" * 32, action="kill_process", reason="replayed")
    check = verify_log(path)
    assert (check.ok, check.lines) == (True, 4)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_changed_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = _write_log(tmp_path)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"admin"', '"nobody"')
    path.write_text("\n".join(lines) + "\n")
    check = verify_log(path)
    assert (check.ok, check.bad_line) == (False, 2)
    assert "line 2 was changed" in check.error


def test_a_changed_or_removed_last_line_is_noticed(tmp_path: Path) -> None:
    path = _write_log(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    check = verify_log(path)
    assert (check.ok, check.bad_line) == (False, 3)


@dataclass
class _Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _settings_from_defaults(no_sekimori_environment: None) -> None:
    """``_cli`` runs the real command in this process: it must not read the suite's
    SEKIMORI_* variables."""


def _cli(state: Path, *args: str) -> _Run:
    """``sekimori agent ...`` in this process (the parser and handlers of the real
    command; a subprocess per call costs seconds on a loaded machine)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["agent", *args, "--state-dir", str(state)])
    return _Run(code, out.getvalue(), err.getvalue())


def test_actions_log_command_prints_and_verifies(tmp_path: Path) -> None:
    path = _write_log(tmp_path)
    shown = _cli(tmp_path, "actions-log")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("lock") == 4 and "signed alice" in shown.stdout
    as_json = _cli(tmp_path, "actions-log", "--json")
    assert [json.loads(x)["nonce"] for x in as_json.stdout.splitlines()] == [
        f"{i:032x}" for i in range(4)
    ]
    assert "chain verified: 4 line(s)" in _cli(tmp_path, "actions-log", "--verify").stdout
    path.write_text(path.read_text().replace("received", "refused", 1))
    broken = _cli(tmp_path, "actions-log", "--verify")
    assert broken.returncode == 1
    assert "CHAIN BROKEN: line 1 was changed" in broken.stderr


def test_trust_operators_pins_a_keyring_file(tmp_path: Path) -> None:
    body = keyring([alice, bob])
    keyring_file = tmp_path / "operators.keyring"
    keyring_file.write_bytes(encode_signed_keyring(signed_keyring(body)))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    wrong = _cli(state, "trust-operators", str(keyring_file), "--fingerprint", "SHA256:" + "1" * 64)
    assert wrong.returncode != 0 and "not the pinned" in wrong.stderr
    assert load_keyring(state) is None
    good = _cli(
        state, "trust-operators", str(keyring_file), "--fingerprint", keyring_fingerprint(body)
    )
    assert good.returncode == 0, good.stderr
    assert "version 1 pinned (2 keys: alice, bob" in good.stdout
    pinned = load_keyring(state)
    assert pinned is not None and pinned.fingerprint == keyring_fingerprint(body)


def test_enroll_flags_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    base = ["enroll", "--server", "wss://127.0.0.1:9", "--token", "t", "--ca-fingerprint"]
    bad_action = _cli(tmp_path, *base, "ab" * 32, "--allow-actions", "message,format_disk")
    assert bad_action.returncode != 0
    assert "unknown action 'format_disk'" in bad_action.stderr
    bad_glob = _cli(tmp_path, *base, "ab" * 32, "--collect-paths", "/srv/*", "relative")
    assert bad_glob.returncode != 0 and "collect_paths" in bad_glob.stderr
    bad_pin = _cli(tmp_path, *base, "ab" * 32, "--operators", "SHA256:xyz")
    assert bad_pin.returncode != 0 and "operators fingerprint" in bad_pin.stderr
    assert list(tmp_path.iterdir()) == []
