"""The executor's refusals and runs, with real files: the pinned keyring, actions.db,
the local policy, the local log and a real outbox in a temporary state directory;
real signatures (tests/operators.py); real processes for kill and restart.

Each refusal of issue 7 at the agent: unsigned or badly signed (as if inserted into
the server's database), signed by a key that is not pinned (the server's keys
replaced), replayed (also after a restart: a new executor on the same directory),
expired, for another device, signed by a removed operator key, a script whose bytes
changed after signing, not allowed by the local policy, remote control off by default.
(Through a real agent process and server: tests/integration/test_actions_agent.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest

from sekimori.agent.actions.audit_log import LOG_FILE, verify_log
from sekimori.agent.actions.executor import NO_KEYRING, Executor, NotSent
from sekimori.agent.actions.keyring import OPERATORS_FILE, pin_keyring
from sekimori.agent.actions.local_policy import LocalActionPolicy, write_local_policy
from sekimori.agent.outbox import Outbox
from sekimori.clock import now_us
from sekimori.protocol.actions import (
    ActionParams,
    CollectFileParams,
    KillProcessParams,
    LockParams,
    MessageParams,
    RemoteControlParams,
    RestartParams,
    RunScriptParams,
    ScreenshotParams,
    Signature,
    SignedCommand,
    merkle_proof,
)
from sekimori.protocol.events.agent import ActionOutcome
from sekimori.protocol.messages import (
    ActionData,
    ActionRequest,
    ActionResult,
    Message,
    OperatorsUpdate,
)
from sekimori.protocol.signing import encode_signed_keyring, keyring_fingerprint
from tests.operators import Operator, Passkey, command, keyring, signed_keyring

DEVICE = "device-1"
REPLAYED = "replayed: this command was already received"
OTHERS = ("device-2", "device-3")

alice = Operator("alice")
bob = Operator("bob")
carol_passkey = Passkey("carol")


class Wire:
    """What the executor sent; ``fail`` makes sending fail (connection dropped)."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.fail = False

    async def __call__(self, message: Message) -> None:
        if self.fail:
            raise NotSent("connection closed")
        self.sent.append(message)


def pin(
    state_dir: Path, signers: Sequence[Operator | Passkey] = (alice, bob, carol_passkey)
) -> bytes:
    body = keyring(signers)
    raw = encode_signed_keyring(signed_keyring(body))
    pin_keyring(state_dir, raw, "SHA256:" + keyring_fingerprint(body))
    return body


def request(
    params: ActionParams,
    by: Sequence[Operator | Passkey] = (alice,),
    devices: Sequence[str] = (DEVICE, *OTHERS),
    *,
    for_device: str = DEVICE,
    attachment: bytes = b"",
    **kwargs: object,
) -> ActionRequest:
    signed = command(params, devices, by, **kwargs)  # type: ignore[arg-type]
    proof = merkle_proof(devices, for_device) if for_device in devices else []
    return ActionRequest(command=signed, device_proof=proof, attachment=attachment)


def run(executor: Executor, req: ActionRequest, wire: Wire | None = None) -> ActionResult:
    return asyncio.run(executor.execute(req, wire or Wire()))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def outbox(state: Path) -> Iterator[Outbox]:
    box = Outbox(state / "outbox.db", max_bytes=10 * 1024 * 1024)
    yield box
    box.close()


@pytest.fixture
def executor(state: Path, outbox: Outbox) -> Iterator[Executor]:
    pin(state)
    ex = Executor(state, DEVICE, record_event=outbox.append)
    yield ex
    ex.close()


def outcomes(outbox: Outbox) -> list[ActionOutcome]:
    events = outbox.peek(0, max_events=1000, max_bytes=10**8)
    return [
        msgspec.msgpack.decode(e.payload, type=ActionOutcome)
        for e in events
        if e.kind == "agent.action"
    ]


def log_lines(state: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (state / LOG_FILE).read_text().splitlines()]


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "300"])


# ---- refusals ------------------------------------------------------------------------


def test_no_keyring_pinned_refuses_everything(state: Path, outbox: Outbox) -> None:
    ex = Executor(state, DEVICE, record_event=outbox.append)
    result = run(ex, request(MessageParams(text="hi"), by=()))
    assert (result.status, result.reason) == ("refused", NO_KEYRING)
    (event,) = outcomes(outbox)
    assert (event.status, event.reason, event.nonce) == ("refused", NO_KEYRING, result.nonce)
    ex.close()


def test_unsigned_command_inserted_into_the_server_is_refused(
    executor: Executor, state: Path, outbox: Outbox
) -> None:
    proc = sleeper()
    try:
        result = run(executor, request(KillProcessParams(pid=proc.pid, name="sleep"), by=()))
        assert result.status == "refused"
        assert result.reason == "kill_process needs an operator signature"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    (event,) = outcomes(outbox)
    assert event.status == "refused" and event.action == "kill_process"
    steps = [line["step"] for line in log_lines(state)]
    assert steps == ["received", "refused"]


def test_forged_signature_is_refused(executor: Executor) -> None:
    req = request(LockParams())
    sig = req.command.signatures[0]
    forged = Signature(key_id=sig.key_id, kind=sig.kind, signature=bytes(64))
    req = ActionRequest(
        command=SignedCommand(body=req.command.body, signatures=[forged]),
        device_proof=req.device_proof,
    )
    result = run(executor, req)
    assert result.status == "refused" and result.reason.startswith("bad signature by key")


def test_body_changed_after_signing_is_refused(executor: Executor) -> None:
    req = request(MessageParams(text="hello"), by=(alice,))
    other = request(MessageParams(text="rm -rf /"), by=())
    tampered = ActionRequest(
        command=SignedCommand(body=other.command.body, signatures=req.command.signatures),
        device_proof=other.device_proof,
    )
    result = run(executor, tampered)
    assert result.status == "refused" and "bad signature" in result.reason


def test_server_keys_replaced_is_refused(executor: Executor) -> None:
    mallory = Operator("alice")  # same name, another key: the server's substitute
    result = run(executor, request(LockParams(), by=(mallory,)))
    assert result.status == "refused"
    assert "which is not a pinned operator key" in result.reason


def test_replay_is_refused_also_after_a_restart(
    executor: Executor, state: Path, outbox: Outbox
) -> None:
    proc = sleeper()
    req = request(KillProcessParams(pid=proc.pid, name="sleep"), by=(alice,))
    first = run(executor, req)
    assert first.status == "done"
    assert proc.wait(5) == -15
    again = run(executor, req)
    assert (again.status, again.reason) == (
        "refused",
        "replayed: this command was already received",
    )
    executor.close()
    restarted = Executor(state, DEVICE, record_event=outbox.append)
    try:
        after = run(restarted, req)
        assert (after.status, after.reason) == ("refused", REPLAYED)
    finally:
        restarted.close()


@pytest.fixture(autouse=True)
def _no_real_shutdown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never let a test reach the real ``shutdown``: PATH gets a ``shutdown`` that
    fails, so a restart that slipped through is a failed result, not a reboot."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "shutdown"
    fake.write_text("#!/bin/sh\necho 'not on a test machine' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_expired_command_is_refused(executor: Executor) -> None:
    issued = now_us() - 3_600_000_000
    result = run(executor, request(LockParams(), issued_at_us=issued, lifetime_s=60))
    assert (result.status, result.reason) == ("refused", "command expired")


def test_command_for_another_device_is_refused(executor: Executor) -> None:
    req = request(LockParams(), devices=OTHERS, for_device="device-2")
    result = run(executor, req)
    assert (result.status, result.reason) == ("refused", "command is not for this device")


def test_removed_operator_key_is_refused(executor: Executor, state: Path) -> None:
    v1 = (state / OPERATORS_FILE).read_bytes()
    from sekimori.protocol.signing import decode_signed_keyring

    body1 = decode_signed_keyring(v1).body
    body2 = keyring([alice, carol_passkey], version=2, previous=body1)
    applied = executor.apply_operators(OperatorsUpdate(chain=[signed_keyring(body2, by=[alice])]))
    assert (applied.version, applied.ok) == (2, True)
    result = run(executor, request(LockParams(), by=(bob,)))
    assert result.status == "refused"
    assert "which is not a pinned operator key" in result.reason


def test_script_bytes_changed_after_signing_is_refused(executor: Executor) -> None:
    script = b"#!/bin/sh\necho hello\n"
    params = RunScriptParams(name="hello", sha256=hashlib.sha256(script).hexdigest())
    req = request(params, attachment=script + b"rm -rf ~\n")
    result = run(executor, req)
    assert result.status == "refused"
    assert "are not the signed" in result.reason


def test_not_allowed_by_local_policy_is_refused(executor: Executor, state: Path) -> None:
    write_local_policy(state, LocalActionPolicy(allowed_actions=["message"]))
    proc = sleeper()
    try:
        req = request(KillProcessParams(pid=proc.pid, name="sleep"))
        result = run(executor, req)
        assert result.status == "refused"
        assert result.reason == "kill_process is not allowed by this PC's local action policy"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_remote_control_is_off_by_default(executor: Executor) -> None:
    result = run(executor, request(RemoteControlParams(), by=(alice,)))
    assert result.reason == "remote_control is not allowed by this PC's local action policy"


def test_unsigned_low_risk_can_be_refused_by_local_policy(executor: Executor, state: Path) -> None:
    write_local_policy(state, LocalActionPolicy(allow_unsigned_low_risk=False))
    result = run(executor, request(ScreenshotParams(), by=()))
    assert result.status == "refused"
    assert "without an operator signature is not allowed" in result.reason


def test_two_operators_needed_above_the_fleet_threshold(executor: Executor) -> None:
    devices = [DEVICE, *(f"d{i}" for i in range(20))]
    proc = sleeper()
    try:
        params = KillProcessParams(pid=proc.pid, name="sleep", signal="KILL")
        one = run(executor, request(params, by=(alice,), devices=devices))
        assert one.status == "refused" and "needs two operators" in one.reason
        two = run(executor, request(params, by=(alice, carol_passkey), devices=devices))
        assert two.status == "done", two
        assert proc.wait(5) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- runs ----------------------------------------------------------------------------


def test_kill_process_kills_the_named_process_only(executor: Executor, state: Path) -> None:
    proc = sleeper()
    try:
        wrong = run(executor, request(KillProcessParams(pid=proc.pid, name="bash")))
        assert wrong.status == "failed" and "not 'bash'" in wrong.reason
        assert proc.poll() is None
        stale = run(
            executor,
            request(KillProcessParams(pid=proc.pid, name="sleep", start_time_us=now_us() - 10**9)),
        )
        assert stale.status == "failed" and "pid reused" in stale.reason
        assert proc.poll() is None
        own = run(executor, request(KillProcessParams(pid=os.getpid(), name="python")))
        assert own.status == "failed" and "refusing" in own.reason
        result = run(executor, request(KillProcessParams(pid=proc.pid, name="sleep")))
        assert result.status == "done", result
        assert "exited" in result.output
        assert proc.wait(5) == -15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert verify_log(state / LOG_FILE).ok


def test_restart_runs_the_configured_command(executor: Executor, tmp_path: Path) -> None:
    # The one mocked edge: `shutdown` itself (it would reboot the test machine). The
    # agent setting points restart/shutdown at a script that records its arguments.
    record = tmp_path / "shutdown-args"
    script = tmp_path / "record-shutdown"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\necho scheduled\n')
    script.chmod(0o755)
    executor.shutdown_command = (str(script),)
    result = run(executor, request(RestartParams(delay_seconds=90, message="updates")))
    assert result.status == "done", result
    assert record.read_text().splitlines() == ["-r", "+2", "updates"]
    assert result.output == "scheduled\n"


def test_missing_handler_answers_not_available(state: Path) -> None:
    pin(state)
    ex = Executor(state, DEVICE, handlers={"lock": "not_there:lock"})
    try:
        result = run(ex, request(LockParams()))
        assert (result.status, result.reason) == ("failed", "lock is not available on this agent")
    finally:
        ex.close()


def test_collected_file_is_streamed_in_chunks(
    executor: Executor, state: Path, tmp_path: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 123)
    target = tmp_path / "evidence.bin"
    target.write_bytes(data)
    write_local_policy(state, LocalActionPolicy(collect_paths=[f"{tmp_path}/*"]))
    wire = Wire()
    result = run(executor, request(CollectFileParams(path=str(target))), wire)
    assert result.status == "done", result
    chunks = [m for m in wire.sent if isinstance(m, ActionData)]
    assert [c.offset for c in chunks] == [0, 1024 * 1024, 2 * 1024 * 1024]
    assert b"".join(c.chunk for c in chunks) == data
    assert (result.data_size, result.data_sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert wire.sent[-1] == result
    # The handler's snapshot is gone once sent.
    assert not any((state / "action-files").glob("*"))


def test_result_kept_when_the_connection_drops_and_sent_later(executor: Executor) -> None:
    proc = sleeper()
    wire = Wire()
    wire.fail = True
    try:
        result = run(executor, request(KillProcessParams(pid=proc.pid, name="sleep")), wire)
        assert result.status == "done"
    finally:
        proc.wait(5)
    assert wire.sent == []
    wire.fail = False
    assert asyncio.run(executor.flush_pending(wire)) == 1
    assert wire.sent == [result]
    assert asyncio.run(executor.flush_pending(wire)) == 0


def test_state_files_are_private(executor: Executor, state: Path) -> None:
    run(executor, request(LockParams(), by=()))
    for name in (OPERATORS_FILE, "actions.db", LOG_FILE):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode & 0o077 == 0, (name, oct(mode))


def test_undecodable_command_is_answered(executor: Executor) -> None:
    req = ActionRequest(command=SignedCommand(body=b"\x93garbage", signatures=[]))
    result = run(executor, req)
    assert result.status == "refused" and result.nonce == "0" * 32
    assert "invalid" in result.reason
