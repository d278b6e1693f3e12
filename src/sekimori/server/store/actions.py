"""Store of signed remote actions (issue 7): keyring versions and proposals, operator
credentials, commands and their per-device targets, the script/package library and
the deployment id. SQLAlchemy Core only; the rules (who may sign, when a command is
ready) live in ``sekimori.server.actions``.

Target lifecycle (``action_targets.state``)::

    pending ──claim──▶ sent ──action_result──▶ done | failed | refused
       │
       └── command expired before delivery ──▶ expired

A ``sent`` target whose agent never answers stays ``sent``: it is never sent again
(the agent's nonce store would refuse a second copy anyway).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import sqlalchemy as sa

from sekimori.protocol.actions import Signature
from sekimori.server.store.schema import (
    action_library,
    action_targets,
    actions,
    keyring_proposals,
    keyring_versions,
    operator_credentials,
    server_metadata,
)

__all__ = [
    "COMMAND_STATES",
    "TARGET_STATES",
    "CommandRow",
    "CredentialRow",
    "KeyringRow",
    "LibraryRow",
    "ProposalRow",
    "Result",
    "TargetRow",
    "cancel_command",
    "claim_target",
    "claim_targets",
    "command_device_ids",
    "command_row",
    "command_rows",
    "credential_rows",
    "decode_signatures",
    "deployment_id",
    "encode_signatures",
    "expire_commands",
    "fail_pending_targets",
    "insert_command",
    "insert_credential",
    "insert_keyring_version",
    "insert_library_item",
    "insert_proposal",
    "keyring_row",
    "keyring_rows",
    "latest_keyring_row",
    "library_item",
    "library_rows",
    "proposal_row",
    "proposal_rows",
    "ready_targets",
    "record_result",
    "record_results",
    "release_target",
    "set_credential_states",
    "target_rows",
    "update_command_signatures",
    "update_proposal",
]

COMMAND_STATES: Final = ("awaiting_signatures", "ready", "expired", "cancelled")
TARGET_STATES: Final = ("pending", "sent", "done", "failed", "refused", "expired")
_DEPLOYMENT_KEY: Final = "deployment_id"

_encoder = msgspec.msgpack.Encoder()
_signatures_decoder = msgspec.msgpack.Decoder(list[Signature])


def encode_signatures(signatures: Sequence[Signature]) -> bytes:
    return _encoder.encode(list(signatures))


def decode_signatures(data: bytes) -> list[Signature]:
    return _signatures_decoder.decode(data) if data else []


# ---- deployment id -------------------------------------------------------------------


def deployment_id(engine: sa.Engine) -> str:
    """This deployment's random id, created on first use (concurrent first uses by
    several replicas agree: the insert of the loser fails and it reads the winner's)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(server_metadata.c.value).where(server_metadata.c.key == _DEPLOYMENT_KEY)
        ).scalar()
    if found is not None:
        return str(found)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(server_metadata).values(key=_DEPLOYMENT_KEY, value=secrets.token_hex(16))
            )
    except sa.exc.IntegrityError:
        pass
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(server_metadata.c.value).where(server_metadata.c.key == _DEPLOYMENT_KEY)
            ).scalar_one()
        )


# ---- keyrings ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyringRow:
    version: int
    body: bytes
    signatures: bytes
    digest: str
    fingerprint: str
    created_by: str
    created_at_us: int


def _keyring(row: Any) -> KeyringRow:
    return KeyringRow(
        version=int(row.version),
        body=bytes(row.body),
        signatures=bytes(row.signatures),
        digest=str(row.digest),
        fingerprint=str(row.fingerprint),
        created_by=str(row.created_by),
        created_at_us=int(row.created_at_us),
    )


def latest_keyring_row(conn: sa.Connection) -> KeyringRow | None:
    row = conn.execute(
        sa.select(keyring_versions).order_by(keyring_versions.c.version.desc()).limit(1)
    ).first()
    return None if row is None else _keyring(row)


def keyring_row(conn: sa.Connection, version: int) -> KeyringRow | None:
    row = conn.execute(
        sa.select(keyring_versions).where(keyring_versions.c.version == version)
    ).first()
    return None if row is None else _keyring(row)


def keyring_rows(conn: sa.Connection, after: int = 0) -> list[KeyringRow]:
    """Published versions above ``after``, oldest first."""
    rows = conn.execute(
        sa.select(keyring_versions)
        .where(keyring_versions.c.version > after)
        .order_by(keyring_versions.c.version)
    )
    return [_keyring(r) for r in rows]


def insert_keyring_version(conn: sa.Connection, row: KeyringRow) -> None:
    """Raises ``IntegrityError`` if that version exists (two publishers raced)."""
    conn.execute(
        sa.insert(keyring_versions).values(
            version=row.version,
            body=row.body,
            signatures=row.signatures,
            digest=row.digest,
            fingerprint=row.fingerprint,
            created_by=row.created_by,
            created_at_us=row.created_at_us,
        )
    )


@dataclass(frozen=True, slots=True)
class ProposalRow:
    id: int
    version: int
    body: bytes
    signatures: bytes
    created_by: str
    created_at_us: int
    state: str


def _proposal(row: Any) -> ProposalRow:
    return ProposalRow(
        id=int(row.id),
        version=int(row.version),
        body=bytes(row.body),
        signatures=bytes(row.signatures),
        created_by=str(row.created_by),
        created_at_us=int(row.created_at_us),
        state=str(row.state),
    )


def insert_proposal(
    conn: sa.Connection, *, version: int, body: bytes, created_by: str, now_us: int
) -> int:
    result = conn.execute(
        sa.insert(keyring_proposals).values(
            version=version,
            body=body,
            signatures=encode_signatures([]),
            created_by=created_by,
            created_at_us=now_us,
            state="open",
        )
    )
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every backend returns it
        raise RuntimeError("no id for the inserted proposal")
    return int(key[0])


def proposal_row(conn: sa.Connection, proposal_id: int) -> ProposalRow | None:
    row = conn.execute(
        sa.select(keyring_proposals).where(keyring_proposals.c.id == proposal_id)
    ).first()
    return None if row is None else _proposal(row)


def proposal_rows(conn: sa.Connection, *, state: str | None = None) -> list[ProposalRow]:
    query = sa.select(keyring_proposals).order_by(keyring_proposals.c.id.desc())
    if state is not None:
        query = query.where(keyring_proposals.c.state == state)
    return [_proposal(r) for r in conn.execute(query)]


def update_proposal(
    conn: sa.Connection,
    proposal_id: int,
    *,
    expected_signatures: bytes,
    signatures: bytes,
    state: str,
) -> bool:
    """Compare-and-set on the signatures seen by the caller: False if another writer
    changed the proposal in between (the caller reads again and retries)."""
    result = conn.execute(
        sa.update(keyring_proposals)
        .where(
            keyring_proposals.c.id == proposal_id,
            keyring_proposals.c.state == "open",
            keyring_proposals.c.signatures == expected_signatures,
        )
        .values(signatures=signatures, state=state)
    )
    return result.rowcount == 1


# ---- operator credentials ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CredentialRow:
    key_id: str
    operator: str
    label: str
    kind: str
    public_key: bytes
    rp_id: str
    origins: list[str]
    credential_id: bytes | None
    created_at_us: int
    state: str


def _credential(row: Any) -> CredentialRow:
    origins = json.loads(row.origins)
    return CredentialRow(
        key_id=str(row.key_id),
        operator=str(row.operator),
        label=str(row.label),
        kind=str(row.kind),
        public_key=bytes(row.public_key),
        rp_id=str(row.rp_id),
        origins=[str(o) for o in origins] if isinstance(origins, list) else [],
        credential_id=None if row.credential_id is None else bytes(row.credential_id),
        created_at_us=int(row.created_at_us),
        state=str(row.state),
    )


def insert_credential(conn: sa.Connection, row: CredentialRow) -> None:
    """Raises ``IntegrityError`` for a key already registered."""
    conn.execute(
        sa.insert(operator_credentials).values(
            key_id=row.key_id,
            operator=row.operator,
            label=row.label,
            kind=row.kind,
            public_key=row.public_key,
            rp_id=row.rp_id,
            origins=json.dumps(row.origins),
            credential_id=row.credential_id,
            created_at_us=row.created_at_us,
            state=row.state,
        )
    )


def credential_rows(
    conn: sa.Connection, *, operator: str | None = None, key_ids: Iterable[str] | None = None
) -> list[CredentialRow]:
    query = sa.select(operator_credentials).order_by(operator_credentials.c.created_at_us)
    if operator is not None:
        query = query.where(operator_credentials.c.operator == operator)
    if key_ids is not None:
        query = query.where(operator_credentials.c.key_id.in_(sorted(set(key_ids))))
    return [_credential(r) for r in conn.execute(query)]


def set_credential_states(conn: sa.Connection, active_key_ids: Iterable[str]) -> None:
    """Credentials follow the published keyring: those in it are ``active``, those
    that were active and are not any more are ``removed``; pending ones stay."""
    active = sorted(set(active_key_ids))
    conn.execute(
        sa.update(operator_credentials)
        .where(operator_credentials.c.key_id.in_(active))
        .values(state="active")
    )
    conn.execute(
        sa.update(operator_credentials)
        .where(
            operator_credentials.c.state == "active",
            operator_credentials.c.key_id.not_in(active),
        )
        .values(state="removed")
    )


# ---- commands and targets ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandRow:
    nonce: str
    action: str
    body: bytes
    digest: str
    device_count: int
    requested_by: str
    reason: str
    created_at_us: int
    expires_at_us: int
    state: str
    signatures: bytes
    signers: list[str]
    needed_signers: int
    ready_at_us: int | None


def _command(row: Any) -> CommandRow:
    return CommandRow(
        nonce=str(row.nonce),
        action=str(row.action),
        body=bytes(row.body),
        digest=str(row.digest),
        device_count=int(row.device_count),
        requested_by=str(row.requested_by),
        reason=str(row.reason),
        created_at_us=int(row.created_at_us),
        expires_at_us=int(row.expires_at_us),
        state=str(row.state),
        signatures=bytes(row.signatures),
        signers=[str(s) for s in json.loads(row.signers)],
        needed_signers=int(row.needed_signers),
        ready_at_us=None if row.ready_at_us is None else int(row.ready_at_us),
    )


def insert_command(conn: sa.Connection, row: CommandRow, device_ids: Sequence[str]) -> None:
    conn.execute(
        sa.insert(actions).values(
            nonce=row.nonce,
            action=row.action,
            body=row.body,
            digest=row.digest,
            device_count=row.device_count,
            requested_by=row.requested_by,
            reason=row.reason,
            created_at_us=row.created_at_us,
            expires_at_us=row.expires_at_us,
            state=row.state,
            signatures=row.signatures,
            signers=json.dumps(row.signers),
            needed_signers=row.needed_signers,
            ready_at_us=row.ready_at_us,
        )
    )
    conn.execute(
        sa.insert(action_targets),
        [
            {"nonce": row.nonce, "device_id": d, "state": "pending", "reason": "", "output": ""}
            for d in sorted(set(device_ids))
        ],
    )


def command_row(conn: sa.Connection, nonce: str) -> CommandRow | None:
    row = conn.execute(sa.select(actions).where(actions.c.nonce == nonce)).first()
    return None if row is None else _command(row)


def command_rows(
    conn: sa.Connection,
    *,
    device_filter: sa.Select[tuple[str]] | None = None,
    limit: int = 100,
    before_us: int | None = None,
) -> list[CommandRow]:
    """Newest first; with ``device_filter`` (a subquery of device ids), only commands
    with at least one target among those devices."""
    query = sa.select(actions).order_by(actions.c.created_at_us.desc()).limit(limit)
    if before_us is not None:
        query = query.where(actions.c.created_at_us < before_us)
    if device_filter is not None:
        query = query.where(
            sa.exists().where(
                action_targets.c.nonce == actions.c.nonce,
                action_targets.c.device_id.in_(device_filter),
            )
        )
    return [_command(r) for r in conn.execute(query)]


def update_command_signatures(
    conn: sa.Connection,
    nonce: str,
    *,
    expected_signatures: bytes,
    signatures: bytes,
    signers: Sequence[str],
    state: str,
    ready_at_us: int | None,
) -> bool:
    """Compare-and-set (see ``update_proposal``); only while awaiting signatures."""
    result = conn.execute(
        sa.update(actions)
        .where(
            actions.c.nonce == nonce,
            actions.c.state == "awaiting_signatures",
            actions.c.signatures == expected_signatures,
        )
        .values(
            signatures=signatures,
            signers=json.dumps(sorted(signers)),
            state=state,
            ready_at_us=ready_at_us,
        )
    )
    return result.rowcount == 1


def command_device_ids(conn: sa.Connection, nonce: str) -> list[str]:
    return list(
        conn.execute(
            sa.select(action_targets.c.device_id)
            .where(action_targets.c.nonce == nonce)
            .order_by(action_targets.c.device_id)
        ).scalars()
    )


@dataclass(frozen=True, slots=True)
class TargetRow:
    nonce: str
    device_id: str
    state: str
    sent_at_us: int | None
    finished_at_us: int | None
    reason: str
    exit_code: int | None
    output: str
    data_sha256: str | None
    data_size: int | None


def target_rows(
    conn: sa.Connection, nonce: str, *, device_filter: sa.Select[tuple[str]] | None = None
) -> list[TargetRow]:
    query = (
        sa.select(action_targets)
        .where(action_targets.c.nonce == nonce)
        .order_by(action_targets.c.device_id)
    )
    if device_filter is not None:
        query = query.where(action_targets.c.device_id.in_(device_filter))
    return [
        TargetRow(
            nonce=str(r.nonce),
            device_id=str(r.device_id),
            state=str(r.state),
            sent_at_us=r.sent_at_us,
            finished_at_us=r.finished_at_us,
            reason=str(r.reason),
            exit_code=r.exit_code,
            output=str(r.output),
            data_sha256=r.data_sha256,
            data_size=r.data_size,
        )
        for r in conn.execute(query)
    ]


def ready_targets(
    conn: sa.Connection, device_ids: Iterable[str] | None, now_us: int
) -> list[tuple[str, str]]:
    """``(nonce, device_id)`` of undelivered targets of ready, unexpired commands
    (restricted to ``device_ids`` when given), oldest command first. Cheap: the index
    on (state, device_id) keeps it to the pending rows."""
    query = (
        sa.select(action_targets.c.nonce, action_targets.c.device_id)
        .join(actions, actions.c.nonce == action_targets.c.nonce)
        .where(
            action_targets.c.state == "pending",
            actions.c.state == "ready",
            actions.c.expires_at_us > now_us,
        )
        .order_by(actions.c.ready_at_us, action_targets.c.nonce)
    )
    if device_ids is not None:
        ids = sorted(set(device_ids))
        if not ids:
            return []
        if len(ids) <= 500:
            query = query.where(action_targets.c.device_id.in_(ids))
            return [(str(n), str(d)) for n, d in conn.execute(query)]
        wanted = set(ids)
        return [(str(n), str(d)) for n, d in conn.execute(query) if d in wanted]
    return [(str(n), str(d)) for n, d in conn.execute(query)]


def claim_target(conn: sa.Connection, nonce: str, device_id: str, now_us: int) -> bool:
    """pending → sent; False if someone else (another replica) claimed it first."""
    result = conn.execute(
        sa.update(action_targets)
        .where(
            action_targets.c.nonce == nonce,
            action_targets.c.device_id == device_id,
            action_targets.c.state == "pending",
        )
        .values(state="sent", sent_at_us=now_us)
    )
    return result.rowcount == 1


def claim_targets(
    conn: sa.Connection, nonce: str, device_ids: Sequence[str], now_us: int
) -> list[str]:
    """pending → sent for many targets of one command at once; returns those this
    caller claimed (UPDATE … RETURNING: a target another replica claimed first is not
    among them)."""
    claimed: list[str] = []
    ids = sorted(set(device_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        claimed += conn.execute(
            sa.update(action_targets)
            .where(
                action_targets.c.nonce == nonce,
                action_targets.c.device_id.in_(chunk),
                action_targets.c.state == "pending",
            )
            .values(state="sent", sent_at_us=now_us)
            .returning(action_targets.c.device_id)
        ).scalars()
    return claimed


def fail_pending_targets(conn: sa.Connection, nonce: str, reason: str, now_us: int) -> int:
    """pending → failed for every target of a command the server cannot send (a
    stored row it cannot decode). Returns how many."""
    return int(
        conn.execute(
            sa.update(action_targets)
            .where(action_targets.c.nonce == nonce, action_targets.c.state == "pending")
            .values(state="failed", reason=reason, finished_at_us=now_us)
        ).rowcount
    )


def release_target(conn: sa.Connection, nonce: str, device_id: str) -> None:
    """sent → pending, when the frame could not be written at all."""
    conn.execute(
        sa.update(action_targets)
        .where(
            action_targets.c.nonce == nonce,
            action_targets.c.device_id == device_id,
            action_targets.c.state == "sent",
        )
        .values(state="pending", sent_at_us=None)
    )


def record_result(
    conn: sa.Connection,
    nonce: str,
    device_id: str,
    *,
    state: str,
    reason: str,
    exit_code: int | None,
    output: str,
    data_sha256: str | None,
    data_size: int | None,
    now_us: int,
) -> bool:
    """sent → done/failed/refused. False if the target was not ``sent`` (a result for
    a command this device was never sent, or a second result)."""
    result = conn.execute(
        sa.update(action_targets)
        .where(
            action_targets.c.nonce == nonce,
            action_targets.c.device_id == device_id,
            action_targets.c.state == "sent",
        )
        .values(
            state=state,
            reason=reason,
            exit_code=exit_code,
            output=output,
            data_sha256=data_sha256,
            data_size=data_size,
            finished_at_us=now_us,
        )
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class Result:
    """One device's answer to a command (``record_results``)."""

    nonce: str
    device_id: str
    state: str
    reason: str
    exit_code: int | None
    output: str
    data_sha256: str | None
    data_size: int | None


def record_results(conn: sa.Connection, results: Sequence[Result], now_us: int) -> list[Result]:
    """``record_result`` for many answers in a few statements (a fleet command's
    thousand answers arrive together). Returns those recorded: a target that was not
    ``sent`` (never sent to that device, or answered already) is left alone."""
    by_command: dict[str, list[Result]] = {}
    for result in results:
        by_command.setdefault(result.nonce, []).append(result)
    recorded: list[Result] = []
    for nonce, answers in by_command.items():
        sent: set[str] = set()
        ids = sorted({a.device_id for a in answers})
        for start in range(0, len(ids), 500):
            sent.update(
                conn.execute(
                    sa.select(action_targets.c.device_id).where(
                        action_targets.c.nonce == nonce,
                        action_targets.c.device_id.in_(ids[start : start + 500]),
                        action_targets.c.state == "sent",
                    )
                ).scalars()
            )
        chosen: dict[str, Result] = {}
        for answer in answers:
            if answer.device_id in sent:
                chosen.setdefault(answer.device_id, answer)  # a second answer: ignored
        if not chosen:
            continue
        conn.execute(
            sa.update(action_targets)
            .where(
                action_targets.c.nonce == sa.bindparam("b_nonce"),
                action_targets.c.device_id == sa.bindparam("b_device"),
                action_targets.c.state == "sent",
            )
            .values(
                state=sa.bindparam("b_state"),
                reason=sa.bindparam("b_reason"),
                exit_code=sa.bindparam("b_exit"),
                output=sa.bindparam("b_output"),
                data_sha256=sa.bindparam("b_sha"),
                data_size=sa.bindparam("b_size"),
                finished_at_us=now_us,
            ),
            [
                {
                    "b_nonce": nonce,
                    "b_device": r.device_id,
                    "b_state": r.state,
                    "b_reason": r.reason,
                    "b_exit": r.exit_code,
                    "b_output": r.output,
                    "b_sha": r.data_sha256,
                    "b_size": r.data_size,
                }
                for r in chosen.values()
            ],
        )
        recorded += chosen.values()
    return recorded


def expire_commands(conn: sa.Connection, now_us: int) -> list[tuple[str, int]]:
    """Commands past their expiry: undelivered targets → expired; commands still
    awaiting signatures (or ready) → expired. Returns ``(nonce, targets expired)``."""
    due = list(
        conn.execute(
            sa.select(actions.c.nonce).where(
                actions.c.state.in_(("awaiting_signatures", "ready")),
                actions.c.expires_at_us <= now_us,
            )
        ).scalars()
    )
    expired: list[tuple[str, int]] = []
    for nonce in due:
        # Conditional: of several replicas running this at once, one expires it.
        won = conn.execute(
            sa.update(actions)
            .where(
                actions.c.nonce == nonce,
                actions.c.state.in_(("awaiting_signatures", "ready")),
            )
            .values(state="expired")
        ).rowcount
        if not won:
            continue
        targets = conn.execute(
            sa.update(action_targets)
            .where(action_targets.c.nonce == nonce, action_targets.c.state == "pending")
            .values(state="expired", finished_at_us=now_us, reason="expired before delivery")
        ).rowcount
        expired.append((str(nonce), int(targets)))
    return expired


# ---- library -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LibraryRow:
    sha256: str
    kind: str
    name: str
    filename: str
    interpreter: str
    size: int
    created_by: str
    created_at_us: int


_LIBRARY_COLUMNS = [c for c in action_library.c if c.name != "content"]


def _library(row: Any) -> LibraryRow:
    return LibraryRow(
        sha256=str(row.sha256),
        kind=str(row.kind),
        name=str(row.name),
        filename=str(row.filename),
        interpreter=str(row.interpreter),
        size=int(row.size),
        created_by=str(row.created_by),
        created_at_us=int(row.created_at_us),
    )


def insert_library_item(conn: sa.Connection, row: LibraryRow, content: bytes) -> bool:
    """False if those bytes are in the library already."""
    exists = conn.execute(
        sa.select(action_library.c.sha256).where(action_library.c.sha256 == row.sha256)
    ).first()
    if exists is not None:
        return False
    conn.execute(
        sa.insert(action_library).values(
            sha256=row.sha256,
            kind=row.kind,
            name=row.name,
            filename=row.filename,
            interpreter=row.interpreter,
            size=row.size,
            content=content,
            created_by=row.created_by,
            created_at_us=row.created_at_us,
        )
    )
    return True


def library_rows(conn: sa.Connection, kind: str | None = None) -> list[LibraryRow]:
    query = sa.select(*_LIBRARY_COLUMNS).order_by(action_library.c.name)
    if kind is not None:
        query = query.where(action_library.c.kind == kind)
    return [_library(r) for r in conn.execute(query)]


def library_item(conn: sa.Connection, sha256: str) -> tuple[LibraryRow, bytes] | None:
    row = conn.execute(sa.select(action_library).where(action_library.c.sha256 == sha256)).first()
    return None if row is None else (_library(row), bytes(row.content))


def cancel_command(conn: sa.Connection, nonce: str, now_us: int) -> bool:
    """awaiting_signatures/ready → cancelled; its undelivered targets → expired."""
    won = conn.execute(
        sa.update(actions)
        .where(
            actions.c.nonce == nonce,
            actions.c.state.in_(("awaiting_signatures", "ready")),
        )
        .values(state="cancelled")
    ).rowcount
    if won:
        conn.execute(
            sa.update(action_targets)
            .where(action_targets.c.nonce == nonce, action_targets.c.state == "pending")
            .values(state="expired", finished_at_us=now_us, reason="cancelled")
        )
    return bool(won)
