"""Runs a remote action only if everything checks out; answers every request.

For each ``action`` request, in this order (the first failure is the refusal reason,
docs/actions.md "A command is accepted by the agent only if"):

1. an operator keyring is pinned on this PC (else: refused, whatever the command);
2. ``verify_command``: strict decode, every signature valid and by a pinned key, this
   deployment, this device in the Merkle root, not from the future, not expired,
   lifetime within the keyring's limit, signed unless low risk, two operators above
   the fleet threshold;
3. the nonce was never seen — it is committed to ``actions.db`` now, before anything
   runs, so neither a replay nor a crash mid-action can run a command twice;
4. the local action policy allows the action (and, unsigned, unsigned low-risk ones);
5. run_script / install_package: the attachment's SHA-256 equals the signed one.

Then the action's handler runs (``registry``), one at a time per family where two at
once would fight (packages, power, remote control). The local log records
``received`` and the final step; the outbox gets an ``agent.action`` event with the
final status; the ``action_result`` is kept in ``actions.db`` until it was sent, so a
result whose connection dropped is sent on the next one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from sekimori.agent.actions.audit_log import LOG_FILE, ActionLog
from sekimori.agent.actions.base import ActionContext, Outcome, cap_output
from sekimori.agent.actions.keyring import (
    ChainResult,
    KeyringError,
    PinnedKeyring,
    apply_chain,
    load_keyring,
)
from sekimori.agent.actions.local_policy import LocalPolicyError, load_local_policy
from sekimori.agent.actions.nonces import ActionsDB
from sekimori.agent.actions.registry import load_handler
from sekimori.clock import now_us
from sekimori.protocol.actions import (
    LOW_RISK,
    MAX_DATA_CHUNK_BYTES,
    CommandBody,
    InstallPackageParams,
    RunScriptParams,
)
from sekimori.protocol.events.agent import ActionOutcome
from sekimori.protocol.messages import (
    ActionData,
    ActionRequest,
    ActionResult,
    Message,
    OperatorsApplied,
    OperatorsUpdate,
)
from sekimori.protocol.signing import Refused, verify_command

__all__ = ["NO_KEYRING", "Executor", "NotSent", "Send"]

log = logging.getLogger(__name__)

NO_KEYRING = "no operator keyring pinned on this PC"
# Where handlers put scratch files (agent/actions/files.py WORK_DIR).
WORK_DIR = "action-files"
_UNKNOWN_NONCE = "0" * 32
_MAX_REASON = 2000

# Actions of one family never run two at a time.
_FAMILY: dict[str, str] = {
    "install_package": "packages",
    "remove_package": "packages",
    "restart": "power",
    "shutdown": "power",
    "remote_control": "remote_control",
    "lock": "session",
    "logoff": "session",
}

Send = Callable[[Message], Awaitable[None]]
EventSink = Callable[[str, ActionOutcome], object]


class NotSent(Exception):
    """Raised by a ``Send`` whose connection is gone (the channel wraps its own
    errors in it)."""


class _Refusal(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Header(msgspec.Struct):
    """The fields read from a body that failed strict decoding (for the reply only)."""

    nonce: str = ""
    params: dict[str, object] = msgspec.field(default_factory=dict)


@dataclass
class Executor:
    state_dir: Path
    device_id: str
    # Appends an event to the outbox (``Outbox.append``); None in tests without one.
    record_event: EventSink | None = None
    hooks: dict[str, Callable[..., object]] = field(default_factory=dict)
    shutdown_command: tuple[str, ...] = ("shutdown",)
    # action -> "module:function" (tests may swap a table in).
    handlers: dict[str, str] | None = None
    clock: Callable[[], int] = now_us

    def __post_init__(self) -> None:
        self.db = ActionsDB(self.state_dir / "actions.db")
        self.log = ActionLog(self.state_dir / LOG_FILE)
        self._locks: dict[str, asyncio.Lock] = {}

    def close(self) -> None:
        self.db.close()

    # ---- keyring --------------------------------------------------------------------

    def pinned(self) -> PinnedKeyring | None:
        return load_keyring(self.state_dir)

    def apply_operators(self, update: OperatorsUpdate) -> OperatorsApplied:
        try:
            current = self.pinned()
        except KeyringError as exc:
            result = ChainResult(None, False, str(exc))
        else:
            result = apply_chain(self.state_dir, current, update.chain)
        version = result.pinned.version if result.pinned is not None else 0
        return OperatorsApplied(version=version, ok=result.ok, error=result.error[:_MAX_REASON])

    # ---- actions ----------------------------------------------------------------------

    async def execute(self, request: ActionRequest, send: Send) -> ActionResult:
        """Check, run and answer ``request``. The result is kept in ``actions.db``
        before ``send`` is tried, and dropped once sent; ``send`` failing (the
        connection dropped) leaves it there for ``flush_pending``."""
        result = await self._run(request, send)
        message = msgspec.msgpack.encode(result)
        self.db.keep_result(result.nonce, message)
        try:
            await send(result)
        except NotSent as exc:
            log.info("result of %s kept for the next connection (%s)", result.nonce, exc)
        else:
            self.db.drop_result(result.nonce)
        return result

    async def flush_pending(self, send: Send) -> int:
        """Send results kept from earlier connections; returns how many were sent."""
        sent = 0
        for nonce, raw in self.db.pending_results():
            try:
                result = msgspec.msgpack.decode(raw, type=ActionResult)
            except msgspec.DecodeError:
                self.db.drop_result(nonce)
                continue
            await send(result)
            self.db.drop_result(nonce)
            sent += 1
        return sent

    async def _run(self, request: ActionRequest, send: Send) -> ActionResult:
        nonce, action = self._header(request.command.body)
        # Before any check: the log shows what arrived even if it is refused.
        self.log.append("received", nonce=nonce, action=action)
        try:
            body, signers = self._check(request)
        except _Refusal as refusal:
            return self._finish(
                nonce, action, "refused", refusal.reason, body=None, signers=frozenset()
            )
        handler = load_handler(body.action, self.handlers)  # type: ignore[arg-type]
        if handler is None:
            return self._finish(
                body.nonce,
                body.action,
                "failed",
                f"{body.action} is not available on this agent",
                body=body,
                signers=signers,
            )
        policy = load_local_policy(self.state_dir)  # checked valid in _check
        context = ActionContext(
            body=body,
            signers=signers,
            state_dir=self.state_dir,
            attachment=request.attachment,
            policy=policy,
            hooks=self.hooks,
            shutdown_command=self.shutdown_command,
        )
        family = _FAMILY.get(body.action)
        lock = self._locks.setdefault(family, asyncio.Lock()) if family else None
        try:
            if lock is not None:
                async with lock:
                    outcome = await handler(body.params, context)
            else:
                outcome = await handler(body.params, context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a handler bug must still be answered
            log.exception("action %s (%s) failed", body.action, body.nonce)
            outcome = Outcome(status="failed", reason=f"unexpected error: {exc}")
        size, digest = 0, ""
        data_path = outcome.data_path
        if outcome.status == "done" and data_path is not None:
            try:
                size, digest = await self._stream(body.nonce, data_path, send)
            except OSError as exc:
                outcome = Outcome(status="failed", reason=f"cannot read the file: {exc}")
            except NotSent as exc:
                outcome = Outcome(
                    status="failed", reason=f"the connection dropped while sending: {exc}"
                )
            finally:
                # Handlers' scratch copies (collect_file's snapshot) go once sent.
                if data_path.parent == self.state_dir / WORK_DIR:
                    data_path.unlink(missing_ok=True)
        return self._finish(
            body.nonce,
            body.action,
            outcome.status,
            outcome.reason,
            body=body,
            signers=signers,
            exit_code=outcome.exit_code,
            output=cap_output(outcome.output),
            data_size=size,
            data_sha256=digest,
        )

    def _check(self, request: ActionRequest) -> tuple[CommandBody, frozenset[str]]:
        try:
            pinned = self.pinned()
        except KeyringError as exc:
            raise _Refusal(str(exc)) from None
        if pinned is None:
            raise _Refusal(NO_KEYRING)
        try:
            body, operators = verify_command(
                request.command,
                keyring=pinned.keyring,
                device_id=self.device_id,
                proof=request.device_proof,
                now_us=self.clock(),
            )
        except Refused as exc:
            raise _Refusal(exc.reason) from None
        signers = frozenset(operators)
        if not self.db.record_nonce(body.nonce, body.action, body.expires_at_us):
            raise _Refusal("replayed: this command was already received")
        try:
            policy = load_local_policy(self.state_dir)
        except LocalPolicyError as exc:
            raise _Refusal(str(exc)) from None
        if not policy.allows(body.action):
            raise _Refusal(f"{body.action} is not allowed by this PC's local action policy")
        if not signers and body.action in LOW_RISK and not policy.allow_unsigned_low_risk:
            raise _Refusal(
                f"{body.action} without an operator signature is not allowed by this "
                "PC's local action policy"
            )
        if isinstance(body.params, RunScriptParams | InstallPackageParams):
            actual = hashlib.sha256(request.attachment).hexdigest()
            if actual != body.params.sha256:
                raise _Refusal(
                    f"the attached bytes (SHA-256 {actual[:16]}…) are not the signed "
                    f"{body.params.sha256[:16]}…"
                )
        elif request.attachment:
            raise _Refusal(f"{body.action} takes no attachment")
        return body, signers

    @staticmethod
    def _header(raw: bytes) -> tuple[str, str]:
        """Nonce and action of a body, leniently (to answer even an invalid one)."""
        try:
            header = msgspec.msgpack.decode(raw, type=_Header)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return _UNKNOWN_NONCE, ""
        nonce = header.nonce if len(header.nonce) == 32 else _UNKNOWN_NONCE
        if any(c not in "0123456789abcdef" for c in nonce):
            nonce = _UNKNOWN_NONCE
        action = header.params.get("action")
        return nonce, action[:64] if isinstance(action, str) else ""

    def _finish(
        self,
        nonce: str,
        action: str,
        status: Literal["done", "failed", "refused"],
        reason: str,
        *,
        body: CommandBody | None,
        signers: frozenset[str],
        exit_code: int | None = None,
        output: str = "",
        data_size: int = 0,
        data_sha256: str = "",
    ) -> ActionResult:
        reason = reason[:_MAX_REASON]
        requested_by = body.requested_by if body is not None else ""
        device_count = body.device_count if body is not None else 0
        self.log.append(
            status,
            nonce=nonce,
            action=action,
            signers=signers,
            requested_by=requested_by,
            reason=reason,
            device_count=device_count,
            extra={"exit_code": exit_code} if exit_code is not None else None,
        )
        if status == "refused":
            log.warning("action %s (%s) refused: %s", action or "?", nonce, reason)
        else:
            log.info("action %s (%s) %s %s", action, nonce, status, reason)
        if self.record_event is not None:
            self.record_event(
                "agent.action",
                ActionOutcome(
                    nonce=nonce,
                    action=action,
                    status=status,
                    reason=reason,
                    signers=sorted(signers),
                    requested_by=requested_by,
                    device_count=device_count,
                ),
            )
        return ActionResult(
            nonce=nonce,
            status=status,
            reason=reason,
            exit_code=exit_code,
            output=output,
            data_size=data_size,
            data_sha256=data_sha256,
        )

    @staticmethod
    async def _stream(nonce: str, path: Path, send: Send) -> tuple[int, str]:
        digest = hashlib.sha256()
        offset = 0
        with path.open("rb") as fh:
            while True:
                chunk = await asyncio.to_thread(fh.read, MAX_DATA_CHUNK_BYTES)
                if not chunk:
                    break
                await send(ActionData(nonce=nonce, offset=offset, chunk=chunk))
                digest.update(chunk)
                offset += len(chunk)
        return offset, digest.hexdigest()
