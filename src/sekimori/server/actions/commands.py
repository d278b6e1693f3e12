"""Commands: creation, operator signatures, views, expiry.

A command is created once (``create_command``): the ``CommandBody`` is encoded here
and those bytes never change; operators sign their digest (``command_digest``) with a
passkey in the console or an Ed25519 key file (``sekimori action sign`` or offline with
``sekimori sign``). Each signature is verified against the CURRENT keyring before it
is stored, so an operator learns at once that a key or signature is wrong — the agent
verifies everything again and is the authority.

Signers needed (same rule as ``verify_command``): none for a low-risk action, one
operator otherwise, two different operators when the command targets more devices
than the keyring's ``fleet_threshold``. With enough of them the command is ``ready``
and the routers of every replica deliver it.

Scope (which devices a console user may target) is checked by the caller; this
module takes device ids and resolves nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us as clock_now_us
from sekimori.protocol.actions import (
    LOW_RISK,
    ActionParams,
    CommandBody,
    InstallPackageParams,
    RunScriptParams,
    Signature,
    command_digest,
    decode_command_body,
    encode_command_body,
    merkle_root,
)
from sekimori.protocol.signing import Keyring, Refused, signers, verify_signature
from sekimori.server.actions.errors import ActionError, ActionNotFound
from sekimori.server.actions.keyrings import current_keyring
from sekimori.server.actions.wakeups import notify_ready
from sekimori.server.blobs import BlobError, BlobStore
from sekimori.server.store import actions as store
from sekimori.server.store.audit import append_audit
from sekimori.server.store.schema import devices
from sekimori.server.store.scope import Scope

__all__ = [
    "DEFAULT_LIFETIME_SECONDS",
    "CommandView",
    "add_command_signature",
    "cancel_command",
    "collected_file",
    "command_view",
    "create_command",
    "expire_due",
    "list_commands",
    "needed_signers",
    "target_results",
]

DEFAULT_LIFETIME_SECONDS = 600
# Without a keyring (only unsigned low-risk commands can be made) the agents' default.
_NO_KEYRING_MAX_SECONDS = 3600


def needed_signers(action: str, device_count: int, keyring: Keyring | None) -> int:
    """0 for a low-risk action, else 1, or 2 above the fleet threshold."""
    if action in LOW_RISK:
        return 0
    if keyring is not None and device_count > keyring.fleet_threshold:
        return 2
    return 1


@dataclass(frozen=True, slots=True)
class CommandView:
    nonce: str
    action: str
    body: CommandBody
    body_bytes: bytes
    digest: bytes  # what operators sign
    device_count: int
    requested_by: str
    reason: str
    created_at_us: int
    expires_at_us: int
    state: str
    signatures: list[Signature]
    signers: list[str]
    needed_signers: int
    ready_at_us: int | None

    @property
    def params(self) -> ActionParams:
        return self.body.params


def _view(row: store.CommandRow) -> CommandView:
    return CommandView(
        nonce=row.nonce,
        action=row.action,
        body=decode_command_body(row.body),
        body_bytes=row.body,
        digest=command_digest(row.body),
        device_count=row.device_count,
        requested_by=row.requested_by,
        reason=row.reason,
        created_at_us=row.created_at_us,
        expires_at_us=row.expires_at_us,
        state=row.state,
        signatures=store.decode_signatures(row.signatures),
        signers=row.signers,
        needed_signers=row.needed_signers,
        ready_at_us=row.ready_at_us,
    )


def _check_attachment(conn: sa.Connection, params: ActionParams) -> None:
    if isinstance(params, RunScriptParams):
        found = store.library_item(conn, params.sha256)
        if found is None or found[0].kind != "script":
            raise ActionError(f"no script with SHA-256 {params.sha256[:12]} in the library")
    elif isinstance(params, InstallPackageParams):
        found = store.library_item(conn, params.sha256)
        if found is None or found[0].kind != "package":
            raise ActionError(f"no package with SHA-256 {params.sha256[:12]} in the library")


def create_command(
    engine: sa.Engine,
    params: ActionParams,
    device_ids: Sequence[str],
    *,
    requested_by: str,
    reason: str = "",
    lifetime_s: int | None = None,
) -> str:
    """Store a new command for ``device_ids`` and return its nonce. State ``ready``
    at once for a low-risk action, else ``awaiting_signatures``. ``lifetime_s``
    defaults to 10 minutes (capped by the keyring's ``max_command_seconds``); a
    longer one than the keyring allows is refused. Raises ``ActionError`` (no
    device, unknown device, no keyring for a signed action, script/package not in the
    library, a field out of range); nothing is stored then. Audited (action.create)."""
    ids = sorted(set(device_ids))
    if not ids:
        raise ActionError("a command targets at least one device")
    found = current_keyring(engine)
    keyring = found[0] if found else None
    action = type(params).__struct_config__.tag
    if not isinstance(action, str):
        raise ActionError("unknown action")
    if keyring is None and action not in LOW_RISK:
        raise ActionError(
            f"{action} needs operator signatures but there is no operator keyring: "
            "run `sekimori operators init`"
        )
    limit = keyring.max_command_seconds if keyring else _NO_KEYRING_MAX_SECONDS
    if lifetime_s is None:
        lifetime_s = min(DEFAULT_LIFETIME_SECONDS, limit)
    if not 30 <= lifetime_s <= limit:
        raise ActionError(f"lifetime must be 30-{limit} seconds (the keyring's limit)")
    deployment = store.deployment_id(engine)
    issued = clock_now_us()
    nonce = secrets.token_hex(16)
    try:
        body = CommandBody(
            deployment=deployment,
            nonce=nonce,
            params=params,
            devices_root=merkle_root(ids),
            device_count=len(ids),
            issued_at_us=issued,
            expires_at_us=issued + lifetime_s * 1_000_000,
            requested_by=requested_by,
            reason=reason,
        )
        encoded = encode_command_body(body)
        decode_command_body(encoded)  # every constraint of the wire format, now
    except (ValueError, TypeError) as exc:
        raise ActionError(str(exc)) from None
    needed = needed_signers(action, len(ids), keyring)
    state = "ready" if needed == 0 else "awaiting_signatures"
    with engine.begin() as conn:
        known = set(conn.execute(sa.select(devices.c.id).where(devices.c.id.in_(ids))).scalars())
        missing = [d for d in ids if d not in known]
        if missing:
            raise ActionError(f"unknown device {missing[0]}")
        _check_attachment(conn, params)
        store.insert_command(
            conn,
            store.CommandRow(
                nonce=nonce,
                action=action,
                body=encoded,
                digest=command_digest(encoded).hex(),
                device_count=len(ids),
                requested_by=requested_by,
                reason=reason,
                created_at_us=issued,
                expires_at_us=body.expires_at_us,
                state=state,
                signatures=store.encode_signatures([]),
                signers=[],
                needed_signers=needed,
                ready_at_us=issued if state == "ready" else None,
            ),
            ids,
        )
        append_audit(
            conn,
            actor=requested_by,
            action="action.create",
            target=nonce,
            detail={
                "action": action,
                "device_count": len(ids),
                "devices": ids[:20],
                "needed_signers": needed,
                "expires_at_us": body.expires_at_us,
                "reason": reason,
                "digest": command_digest(encoded).hex(),
            },
        )
    if state == "ready":
        notify_ready(engine)
    return nonce


def add_command_signature(engine: sa.Engine, nonce: str, signature: Signature, by: str) -> str:
    """Verify one operator's signature against the current keyring and store it;
    returns the command's state (``ready`` once enough different operators signed).
    Raises ``ActionError`` (key not in the keyring, bad signature, signed already,
    expired or not awaiting signatures) and changes nothing then. Audited."""
    for _ in range(5):  # compare-and-set against a concurrent signature
        with engine.connect() as conn:
            row = store.command_row(conn, nonce)
        if row is None:
            raise ActionNotFound(f"no command {nonce}")
        if row.state != "awaiting_signatures":
            raise ActionError(f"command {nonce} is {row.state}: it takes no more signatures")
        if row.expires_at_us <= clock_now_us():
            raise ActionError(f"command {nonce} has expired")
        found = current_keyring(engine)
        if found is None:
            raise ActionError("there is no operator keyring")
        keyring = found[0]
        key = next((k for k in keyring.keys if k.key_id == signature.key_id), None)
        if key is None:
            raise ActionError(
                f"key {signature.key_id[:12]} is not in the current operator keyring "
                f"(version {keyring.version})"
            )
        digest = command_digest(row.body)
        try:
            verify_signature(key, signature, digest)
        except Refused as exc:
            raise ActionError(f"signature refused: {exc.reason}") from None
        sigs = store.decode_signatures(row.signatures)
        if any(s.key_id == signature.key_id for s in sigs):
            raise ActionError(f"key {signature.key_id[:12]} has signed this command already")
        if len(sigs) >= 8:
            raise ActionError("a command carries at most 8 signatures")
        sigs.append(signature)
        try:
            operators = signers(keyring, sigs, digest)
        except Refused as exc:  # an earlier signature by a key since removed
            raise ActionError(f"signature refused: {exc.reason}") from None
        state = "ready" if len(operators) >= row.needed_signers else "awaiting_signatures"
        now = clock_now_us()
        with engine.begin() as conn:
            if not store.update_command_signatures(
                conn,
                nonce,
                expected_signatures=row.signatures,
                signatures=store.encode_signatures(sigs),
                signers=sorted(operators),
                state=state,
                ready_at_us=now if state == "ready" else None,
            ):
                continue
            append_audit(
                conn,
                actor=by,
                action="action.sign",
                target=nonce,
                detail={
                    "key_id": signature.key_id,
                    "kind": signature.kind,
                    "operator": key.operator,
                    "state": state,
                },
            )
        if state == "ready":
            notify_ready(engine)
        return state
    raise ActionError("the command kept changing; try again")


def cancel_command(engine: sa.Engine, nonce: str, by: str) -> None:
    """Stop a command that is not delivered yet (targets already sent are not
    recalled: their agents have it)."""
    with engine.begin() as conn:
        if not store.cancel_command(conn, nonce, clock_now_us()):
            if store.command_row(conn, nonce) is None:
                raise ActionNotFound(f"no command {nonce}")
            raise ActionError(f"command {nonce} cannot be cancelled any more")
        append_audit(conn, actor=by, action="action.cancel", target=nonce)


def command_view(engine: sa.Engine, nonce: str) -> CommandView:
    with engine.connect() as conn:
        row = store.command_row(conn, nonce)
    if row is None:
        raise ActionNotFound(f"no command {nonce}")
    return _view(row)


def list_commands(
    engine: sa.Engine, scope: Scope | None = None, *, limit: int = 100, before_us: int | None = None
) -> list[CommandView]:
    """Newest first; with a limited ``scope``, commands with a target in it."""
    device_filter = None if scope is None or scope.all_groups else scope.device_ids()
    with engine.connect() as conn:
        rows = store.command_rows(
            conn, device_filter=device_filter, limit=limit, before_us=before_us
        )
    return [_view(r) for r in rows]


def target_results(
    engine: sa.Engine, nonce: str, scope: Scope | None = None
) -> list[store.TargetRow]:
    """Per-device state and result of a command (within ``scope``)."""
    device_filter = None if scope is None or scope.all_groups else scope.device_ids()
    with engine.connect() as conn:
        return store.target_rows(conn, nonce, device_filter=device_filter)


def collected_file(
    engine: sa.Engine, blobs: BlobStore, nonce: str, device_id: str, *, by: str
) -> bytes:
    """The bytes a ``collect_file`` command brought back from ``device_id`` (checked
    against the SHA-256 the agent reported). Audited (action.download)."""
    with engine.connect() as conn:
        rows = [t for t in store.target_rows(conn, nonce) if t.device_id == device_id]
    if not rows or not rows[0].data_sha256:
        raise ActionNotFound(f"no collected file for command {nonce} on device {device_id}")
    digest = rows[0].data_sha256
    try:
        data = blobs.get(digest)
    except BlobError as exc:
        raise ActionNotFound(f"collected file unavailable: {exc}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ActionError("collected file does not match its SHA-256")
    append_audit(
        engine,
        actor=by,
        action="action.download",
        target=nonce,
        detail={"device_id": device_id, "sha256": digest, "size": len(data)},
    )
    return data


def expire_due(engine: sa.Engine) -> list[tuple[str, int]]:
    """Expire commands past their time (undelivered targets → ``expired``); safe to
    run on every replica at once. Audited per command (action.expire)."""
    with engine.begin() as conn:
        expired = store.expire_commands(conn, clock_now_us())
        for nonce, targets in expired:
            append_audit(
                conn,
                actor="system",
                action="action.expire",
                target=nonce,
                detail={"undelivered": targets},
            )
    return expired
