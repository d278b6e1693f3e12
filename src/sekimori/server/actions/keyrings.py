"""Operator keyrings on the server: version 1, proposals, signatures, publication.

The server keeps and forwards keyrings; it cannot make one an agent accepts. Version
1 is pinned on each PC by its fingerprint (the enroll command prints it); every later
version must carry signatures from ``quorum`` different operators of the version
before, which the server checks here with the very function the agent runs
(``verify_keyring_step``) before publishing. Published versions are pushed to agents
(``operators``) by ``sekimori.server.actions.routing``.

Every change is audited in the same transaction (``operators.*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.actions import Signature
from sekimori.protocol.signing import (
    Keyring,
    OperatorKey,
    Refused,
    SignedKeyring,
    decode_keyring,
    encode_keyring,
    keyring_digest,
    keyring_fingerprint,
    signers,
    verify_keyring_step,
    verify_signature,
)
from sekimori.protocol.signing import (
    key_id as compute_key_id,
)
from sekimori.server.actions.errors import ActionError, ActionNotFound
from sekimori.server.store import actions as store
from sekimori.server.store.audit import append_audit

__all__ = [
    "CHAIN_LIMIT",
    "ProposalView",
    "add_credential",
    "add_proposal_signature",
    "credentials_of",
    "current_fingerprint",
    "current_keyring",
    "init_keyring",
    "keyring_chain",
    "list_proposals",
    "proposal_view",
    "propose_keyring",
    "withdraw_proposal",
]

# The most keyring versions one ``operators`` message carries (protocol limit).
CHAIN_LIMIT = 64


def current_keyring(engine: sa.Engine) -> tuple[Keyring, bytes, SignedKeyring] | None:
    """The newest published keyring: decoded, its body bytes, and as signed; None
    before ``init_keyring``."""
    with engine.connect() as conn:
        row = store.latest_keyring_row(conn)
    if row is None:
        return None
    signed = SignedKeyring(body=row.body, signatures=store.decode_signatures(row.signatures))
    return decode_keyring(row.body), row.body, signed


def current_fingerprint(engine: sa.Engine) -> str | None:
    """Hex fingerprint of the current keyring (what ``--operators SHA256:`` pins)."""
    with engine.connect() as conn:
        row = store.latest_keyring_row(conn)
    return None if row is None else row.fingerprint


def keyring_chain(engine: sa.Engine, after: int = 0) -> list[SignedKeyring]:
    """Published versions above ``after``, oldest first, at most the newest
    ``CHAIN_LIMIT`` (an agent further behind cannot catch up by the chain anyway and
    is re-pinned by its administrator)."""
    with engine.connect() as conn:
        rows = store.keyring_rows(conn, after)
    return [
        SignedKeyring(body=r.body, signatures=store.decode_signatures(r.signatures))
        for r in rows[-CHAIN_LIMIT:]
    ]


def _publish(
    conn: sa.Connection, body: bytes, signatures: Sequence[Signature], keyring: Keyring, by: str
) -> store.KeyringRow:
    row = store.KeyringRow(
        version=keyring.version,
        body=body,
        signatures=store.encode_signatures(signatures),
        digest=keyring_digest(body).hex(),
        fingerprint=keyring_fingerprint(body),
        created_by=by,
        created_at_us=now_us(),
    )
    store.insert_keyring_version(conn, row)
    for key in keyring.keys:
        if not store.credential_rows(conn, key_ids=[key.key_id]):
            store.insert_credential(conn, _credential_row(key, None, state="active"))
    store.set_credential_states(conn, [k.key_id for k in keyring.keys])
    return row


def _credential_row(
    key: OperatorKey, credential_id: bytes | None, state: str
) -> store.CredentialRow:
    return store.CredentialRow(
        key_id=key.key_id,
        operator=key.operator,
        label=key.label,
        kind=key.kind,
        public_key=key.public_key,
        rp_id=key.rp_id,
        origins=list(key.origins),
        credential_id=credential_id,
        created_at_us=now_us(),
        state=state,
    )


def init_keyring(
    engine: sa.Engine,
    keys: Sequence[OperatorKey],
    quorum: int,
    fleet_threshold: int,
    by: str,
    *,
    max_command_seconds: int = 3600,
) -> str:
    """Publish keyring version 1 (only when there is none). Returns its fingerprint.
    Raises ``ActionError`` for an invalid keyring (quorum above the number of
    operators, a duplicated key ...) or if a keyring exists already."""
    deployment = store.deployment_id(engine)
    try:
        body = encode_keyring(
            Keyring(
                deployment=deployment,
                version=1,
                quorum=quorum,
                fleet_threshold=fleet_threshold,
                max_command_seconds=max_command_seconds,
                keys=list(keys),
                created_at_us=now_us(),
            )
        )
        keyring = decode_keyring(body)
    except (ValueError, TypeError) as exc:
        raise ActionError(str(exc)) from None
    try:
        with engine.begin() as conn:
            if store.latest_keyring_row(conn) is not None:
                raise ActionError("a keyring exists already: change it with a proposal")
            row = _publish(conn, body, [], keyring, by)
            append_audit(
                conn,
                actor=by,
                action="operators.init",
                target="keyring 1",
                detail={
                    "fingerprint": row.fingerprint,
                    "keys": [k.key_id for k in keyring.keys],
                    "quorum": quorum,
                    "fleet_threshold": fleet_threshold,
                },
            )
    except sa.exc.IntegrityError:
        raise ActionError("a keyring exists already: change it with a proposal") from None
    return row.fingerprint


def propose_keyring(
    engine: sa.Engine,
    *,
    add: Sequence[OperatorKey] = (),
    remove: Sequence[str] = (),
    quorum: int | None = None,
    fleet_threshold: int | None = None,
    max_command_seconds: int | None = None,
    by: str,
) -> int:
    """Make the next version from the current one with the changes; returns the
    proposal's id. It is published once ``quorum`` operators of the current version
    have signed it (``add_proposal_signature``)."""
    found = current_keyring(engine)
    if found is None:
        raise ActionError("there is no keyring yet: run `sekimori operators init`")
    current, current_body, _ = found
    present = {k.key_id for k in current.keys}
    for key_id in remove:
        if key_id not in present:
            raise ActionError(f"key {key_id[:12]} is not in keyring version {current.version}")
    for key in add:
        if key.key_id in present:
            raise ActionError(f"key {key.key_id[:12]} is in the keyring already")
    keys = [k for k in current.keys if k.key_id not in set(remove)] + list(add)
    if not (add or remove or quorum or fleet_threshold or max_command_seconds):
        raise ActionError("the proposal changes nothing")
    try:
        body = encode_keyring(
            Keyring(
                deployment=current.deployment,
                version=current.version + 1,
                previous_sha256=keyring_digest(current_body).hex(),
                quorum=current.quorum if quorum is None else quorum,
                fleet_threshold=(
                    current.fleet_threshold if fleet_threshold is None else fleet_threshold
                ),
                max_command_seconds=(
                    current.max_command_seconds
                    if max_command_seconds is None
                    else max_command_seconds
                ),
                keys=keys,
                created_at_us=now_us(),
            )
        )
        decode_keyring(body)
    except (ValueError, TypeError) as exc:
        raise ActionError(str(exc)) from None
    with engine.begin() as conn:
        proposal_id = store.insert_proposal(
            conn, version=current.version + 1, body=body, created_by=by, now_us=now_us()
        )
        append_audit(
            conn,
            actor=by,
            action="operators.propose",
            target=f"proposal {proposal_id}",
            detail={
                "version": current.version + 1,
                "add": [k.key_id for k in add],
                "remove": list(remove),
                "quorum": quorum,
                "fleet_threshold": fleet_threshold,
                "digest": keyring_digest(body).hex(),
            },
        )
    return proposal_id


@dataclass(frozen=True, slots=True)
class ProposalView:
    id: int
    version: int
    body: bytes
    keyring: Keyring
    digest: bytes  # what operators sign
    signatures: list[Signature]
    signers: set[str]  # operators of the current keyring who signed
    needed: int  # the current keyring's quorum
    state: str
    created_by: str
    created_at_us: int


def _view(conn: sa.Connection, row: store.ProposalRow) -> ProposalView:
    """Signers and quorum are those of the version the proposal follows."""
    base_row = store.keyring_row(conn, row.version - 1)
    base = decode_keyring(base_row.body) if base_row is not None else None
    sigs = store.decode_signatures(row.signatures)
    digest = keyring_digest(row.body)
    who: set[str] = set()
    if base is not None:
        try:
            who = signers(base, sigs, digest)
        except Refused:
            who = set()
    return ProposalView(
        id=row.id,
        version=row.version,
        body=row.body,
        keyring=decode_keyring(row.body),
        digest=digest,
        signatures=sigs,
        signers=who,
        needed=base.quorum if base is not None else 0,
        state=row.state,
        created_by=row.created_by,
        created_at_us=row.created_at_us,
    )


def proposal_view(engine: sa.Engine, proposal_id: int) -> ProposalView:
    with engine.connect() as conn:
        row = store.proposal_row(conn, proposal_id)
        if row is None:
            raise ActionNotFound(f"no keyring proposal {proposal_id}")
        return _view(conn, row)


def list_proposals(engine: sa.Engine, state: str | None = "open") -> list[ProposalView]:
    with engine.connect() as conn:
        return [_view(conn, r) for r in store.proposal_rows(conn, state=state)]


def add_proposal_signature(
    engine: sa.Engine, proposal_id: int, signature: Signature, by: str
) -> ProposalView:
    """Add one operator's signature to an open proposal, verified against the
    CURRENT keyring; publish the new version when signatures of ``quorum`` different
    operators are there. Raises ``ActionError`` (bad signature, key not in the
    current keyring, proposal stale or closed); nothing changes then."""
    for _ in range(5):  # compare-and-set: another signature may land in between
        found = current_keyring(engine)
        if found is None:
            raise ActionError("there is no keyring yet")
        current, current_body, _ = found
        with engine.connect() as conn:
            row = store.proposal_row(conn, proposal_id)
        if row is None:
            raise ActionNotFound(f"no keyring proposal {proposal_id}")
        if row.state != "open":
            raise ActionError(f"proposal {proposal_id} is {row.state}")
        if row.version != current.version + 1:
            raise ActionError(
                f"proposal {proposal_id} is for version {row.version} but the current "
                f"keyring is version {current.version}: propose again"
            )
        digest = keyring_digest(row.body)
        key = next((k for k in current.keys if k.key_id == signature.key_id), None)
        if key is None:
            raise ActionError(
                f"key {signature.key_id[:12]} is not in keyring version {current.version}: "
                "only its operators can approve a change"
            )
        try:
            verify_signature(key, signature, digest)
        except Refused as exc:
            raise ActionError(exc.reason) from None
        sigs = store.decode_signatures(row.signatures)
        if any(s.key_id == signature.key_id for s in sigs):
            raise ActionError(f"key {signature.key_id[:12]} has signed this proposal already")
        sigs.append(signature)
        operators = signers(current, sigs, digest)
        publish = len(operators) >= current.quorum
        new_keyring: Keyring | None = None
        if publish:
            try:
                new_keyring = verify_keyring_step(
                    current, current_body, SignedKeyring(body=row.body, signatures=sigs)
                )
            except Refused as exc:
                raise ActionError(exc.reason) from None
        try:
            with engine.begin() as conn:
                if not store.update_proposal(
                    conn,
                    proposal_id,
                    expected_signatures=row.signatures,
                    signatures=store.encode_signatures(sigs),
                    state="published" if publish else "open",
                ):
                    continue
                append_audit(
                    conn,
                    actor=by,
                    action="operators.sign",
                    target=f"proposal {proposal_id}",
                    detail={"key_id": signature.key_id, "operator": key.operator},
                )
                if new_keyring is not None:
                    published = _publish(conn, row.body, sigs, new_keyring, by)
                    append_audit(
                        conn,
                        actor=by,
                        action="operators.publish",
                        target=f"keyring {published.version}",
                        detail={
                            "proposal": proposal_id,
                            "fingerprint": published.fingerprint,
                            "signers": sorted(operators),
                        },
                    )
        except sa.exc.IntegrityError:
            raise ActionError("another keyring version was published meanwhile") from None
        return proposal_view(engine, proposal_id)
    raise ActionError("the proposal kept changing; try again")


def withdraw_proposal(engine: sa.Engine, proposal_id: int, by: str) -> None:
    with engine.begin() as conn:
        row = store.proposal_row(conn, proposal_id)
        if row is None:
            raise ActionNotFound(f"no keyring proposal {proposal_id}")
        if row.state != "open" or not store.update_proposal(
            conn,
            proposal_id,
            expected_signatures=row.signatures,
            signatures=row.signatures,
            state="withdrawn",
        ):
            raise ActionError(f"proposal {proposal_id} is not open")
        append_audit(conn, actor=by, action="operators.withdraw", target=f"proposal {proposal_id}")


# ---- credentials ---------------------------------------------------------------------


def add_credential(
    engine: sa.Engine, key: OperatorKey, credential_id: bytes | None, by: str
) -> store.CredentialRow:
    """Register a credential (state ``pending``: it signs nothing until a published
    keyring lists it). Raises ``ActionError`` for an invalid key or one known already."""
    try:
        if key.key_id != compute_key_id(key.public_key):
            raise ActionError("key_id is not the SHA-256 of the public key")
        # Validates the key type the same way a keyring would.
        decode_keyring(encode_keyring(Keyring(deployment="check", version=1, keys=[key], quorum=1)))
    except ValueError as exc:
        raise ActionError(str(exc)) from None
    row = _credential_row(key, credential_id, state="pending")
    try:
        with engine.begin() as conn:
            store.insert_credential(conn, row)
            append_audit(
                conn,
                actor=by,
                action="operators.credential_add",
                target=key.key_id,
                detail={"operator": key.operator, "kind": key.kind, "label": key.label},
            )
    except sa.exc.IntegrityError:
        raise ActionError(f"key {key.key_id[:12]} is registered already") from None
    return row


def credentials_of(engine: sa.Engine, operator: str | None) -> list[store.CredentialRow]:
    """The credentials of one operator (console user), or all with None."""
    with engine.connect() as conn:
        return store.credential_rows(conn, operator=operator)
