"""Console: operators' passkeys and the operator keyring (docs/actions.md).

* ``GET /operators`` (permission ``actions``): the user's own passkeys and the button
  that registers one; keyring changes waiting for signatures, which a keyholder signs
  with a passkey. With permission ``operators`` (administrators) also the keyring:
  versions, keys, the fingerprint enrollment pins, and the forms that create version 1
  or propose a change.
* ``POST /operators/passkeys/options`` → creation options (JSON) with a fresh
  challenge kept for this console session (single use); ``POST /operators/passkeys``
  verifies the browser's attestation and stores the public key as a *pending*
  credential.
* ``POST /operators/keyring`` (``operators``): version 1 from pending credentials,
  only while no keyring exists.
* ``POST /operators/proposals`` (``operators``): propose the next version (add
  pending credentials, remove keys, change quorum or fleet threshold).
* ``POST /operators/proposals/{id}/sign`` (``actions``): a passkey assertion over the
  proposal's keyring digest; published when the quorum is reached.

JSON endpoints answer ``{"redirect": url}`` or ``{"error": message}`` (actions.js).
Every change is audited.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.protocol.signing import Keyring, OperatorKey, decode_keyring
from sekimori.server.actions import keyrings
from sekimori.server.actions.errors import ActionError
from sekimori.server.actions.passkeys import (
    Assertion,
    ChallengeStore,
    PasskeyError,
    RelyingParty,
    assertion_signature,
    b64url,
    registration_options,
    relying_party,
    verify_registration,
)
from sekimori.server.console.i18n import gettext
from sekimori.server.console.web import PageContext, page
from sekimori.server.store import actions as store

__all__ = ["allow_list", "challenges", "read_assertion", "routes", "rp_for", "signing_credentials"]

_CHALLENGES_STATE = "passkey_challenges"


def challenges(request: Request) -> ChallengeStore:
    """This app's registration challenges (made on first use)."""
    found = getattr(request.app.state, _CHALLENGES_STATE, None)
    if not isinstance(found, ChallengeStore):
        found = ChallengeStore()
        setattr(request.app.state, _CHALLENGES_STATE, found)
    return found


def rp_for(ctx: PageContext) -> RelyingParty:
    base = str(ctx.request.base_url)
    return relying_party(ctx.console.settings.server.notify.console_url, base)


def signing_credentials(ctx: PageContext) -> dict[bytes, str]:
    """The user's active passkeys: credential id → key id."""
    rows = keyrings.credentials_of(ctx.engine, ctx.user.username)
    return {
        r.credential_id: r.key_id
        for r in rows
        if r.state == "active" and r.kind == "webauthn" and r.credential_id
    }


def allow_list(credentials: dict[bytes, str]) -> str:
    return ",".join(b64url(c) for c in credentials)


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@dataclass(frozen=True, slots=True)
class ProposalChanges:
    """What an open proposal changes, for the page, and whether this user signed."""

    proposal: keyrings.ProposalView
    added: list[OperatorKey]
    removed: list[OperatorKey]
    challenge: str  # base64url keyring digest: what a passkey signs
    signed_by_me: bool


def _changes(
    proposal: keyrings.ProposalView, current: Keyring | None, mine: set[str]
) -> ProposalChanges:
    before = {k.key_id: k for k in (current.keys if current else [])}
    after = {k.key_id: k for k in proposal.keyring.keys}
    return ProposalChanges(
        proposal=proposal,
        added=[k for i, k in after.items() if i not in before],
        removed=[k for i, k in before.items() if i not in after],
        challenge=b64url(proposal.digest),
        signed_by_me=any(s.key_id in mine for s in proposal.signatures),
    )


def _page(ctx: PageContext, *, error: str = "", status: int = 200) -> Response:
    mine = keyrings.credentials_of(ctx.engine, ctx.user.username)
    pending = [c for c in keyrings.credentials_of(ctx.engine, None) if c.state == "pending"]
    with ctx.engine.connect() as conn:
        versions = store.keyring_rows(conn)
    latest = versions[-1] if versions else None
    current = decode_keyring(latest.body) if latest else None
    my_keys = {c.key_id for c in mine if c.state == "active"}
    proposals = [_changes(p, current, my_keys) for p in keyrings.list_proposals(ctx.engine)]
    signing = signing_credentials(ctx)
    return ctx.render(
        "operators.html",
        status=status,
        mine=mine,
        pending=pending,
        versions=list(reversed(versions)),
        latest=latest,
        current=current,
        proposals=proposals,
        allow=allow_list(signing),
        may_sign=bool(signing),
        error=error,
        rp=rp_for(ctx),
    )


@page("actions")
def overview(ctx: PageContext) -> Response:
    return _page(ctx)


def _session_key(ctx: PageContext) -> str:
    return ctx.session.token_hash


@page("actions")
def passkey_options(ctx: PageContext) -> Response:
    try:
        rp = rp_for(ctx)
    except PasskeyError as exc:
        return _error(str(exc))
    existing = [
        r.credential_id
        for r in keyrings.credentials_of(ctx.engine, ctx.user.username)
        if r.credential_id and r.state != "removed"
    ]
    challenge = challenges(ctx.request).issue(_session_key(ctx))
    # A stable, opaque user handle: nothing personal goes into the authenticator.
    handle = hashlib.sha256(f"sekimori-operator:{ctx.user.id}".encode()).digest()
    options = registration_options(
        rp,
        operator=ctx.user.username,
        user_handle=handle,
        challenge=challenge,
        exclude=existing,
    )
    return Response(options, media_type="application/json")


@page("actions")
def passkey_register(ctx: PageContext) -> Response:
    challenge = challenges(ctx.request).take(_session_key(ctx))
    if challenge is None:
        return _error(gettext("The registration expired; start again."))
    label = ctx.field("label").strip()[:200]
    try:
        registered = verify_registration(
            ctx.field("credential"),
            rp=rp_for(ctx),
            challenge=challenge,
            operator=ctx.user.username,
            label=label,
        )
        keyrings.add_credential(
            ctx.engine,
            registered.key,
            registered.credential_id,
            by=ctx.user.username,
        )
    except (PasskeyError, ActionError) as exc:
        ctx.audit("operators.passkey_refused", ctx.user.username, reason=str(exc)[:300])
        return _error(gettext("The passkey was refused: %(reason)s") % {"reason": str(exc)})
    # Audited by the service (operators.credential_add).
    return JSONResponse({"redirect": "/operators?registered=" + registered.key.key_id[:16]})


def _int_field(ctx: PageContext, name: str, low: int, high: int) -> int | None:
    raw = ctx.field(name).strip()
    if not raw.isdigit() or not low <= int(raw) <= high:
        return None
    return int(raw)


def _checked(ctx: PageContext, name: str) -> list[str]:
    if ctx.form is None:
        return []
    return [v for v in ctx.form.getlist(name) if isinstance(v, str)]


def _pending_keys(ctx: PageContext, key_ids: list[str]) -> list[OperatorKey]:
    if not key_ids:
        return []
    wanted = set(key_ids)
    rows = [r for r in keyrings.credentials_of(ctx.engine, None) if r.key_id in wanted]
    return [
        OperatorKey(
            key_id=r.key_id,
            operator=r.operator,
            label=r.label,
            kind=r.kind,  # type: ignore[arg-type]
            public_key=r.public_key,
            rp_id=r.rp_id,
            origins=r.origins,
        )
        for r in rows
        if r.state == "pending"
    ]


@page("operators")
def create_keyring(ctx: PageContext) -> Response:
    keys = _pending_keys(ctx, _checked(ctx, "key"))
    quorum = _int_field(ctx, "quorum", 1, 16)
    threshold = _int_field(ctx, "fleet_threshold", 1, 10_000_000)
    if not keys or quorum is None or threshold is None:
        return _page(ctx, error="keyring_form", status=400)
    try:
        fingerprint = keyrings.init_keyring(
            ctx.engine, keys, quorum=quorum, fleet_threshold=threshold, by=ctx.user.username
        )
    except ActionError as exc:
        return _page(ctx, error=exc.message, status=400)
    # Audited by the service, in the same transaction (operators.init).
    del fingerprint
    return RedirectResponse("/operators", status_code=303)


@page("operators")
def propose(ctx: PageContext) -> Response:
    add = _pending_keys(ctx, _checked(ctx, "add"))
    remove = _checked(ctx, "remove")
    quorum = _int_field(ctx, "quorum", 1, 16)
    threshold = _int_field(ctx, "fleet_threshold", 1, 10_000_000)
    if quorum is None or threshold is None:
        return _page(ctx, error="keyring_form", status=400)
    try:
        keyrings.propose_keyring(
            ctx.engine,
            add=add,
            remove=remove,
            quorum=quorum,
            fleet_threshold=threshold,
            by=ctx.user.username,
        )
    except ActionError as exc:
        return _page(ctx, error=exc.message, status=400)
    # Audited by the service (operators.propose).
    return RedirectResponse("/operators", status_code=303)


def read_assertion(ctx: PageContext) -> Assertion:
    try:
        return msgspec.convert(
            {
                "credential_id": ctx.field("credential_id"),
                "authenticator_data": ctx.field("authenticator_data"),
                "client_data_json": ctx.field("client_data_json"),
                "signature": ctx.field("signature"),
            },
            Assertion,
        )
    except msgspec.ValidationError as exc:
        raise PasskeyError(str(exc)) from None


@page("actions")
def sign_proposal(ctx: PageContext) -> Response:
    try:
        proposal_id = int(ctx.request.path_params["proposal_id"])
    except ValueError:
        return _error(gettext("Unknown keyring change."), 404)
    try:
        signature = assertion_signature(read_assertion(ctx), signing_credentials(ctx))
        keyrings.add_proposal_signature(ctx.engine, proposal_id, signature, by=ctx.user.username)
    except (PasskeyError, ActionError) as exc:
        ctx.audit("operators.proposal_sign_refused", str(proposal_id), reason=str(exc)[:300])
        return _error(gettext("The signature was refused: %(reason)s") % {"reason": str(exc)})
    # Audited by the service (operators.sign, operators.publish).
    return JSONResponse({"redirect": "/operators"})


routes: list[BaseRoute] = [
    Route("/operators", overview, methods=["GET"]),
    Route("/operators/passkeys/options", passkey_options, methods=["POST"]),
    Route("/operators/passkeys", passkey_register, methods=["POST"]),
    Route("/operators/keyring", create_keyring, methods=["POST"]),
    Route("/operators/proposals", propose, methods=["POST"]),
    Route("/operators/proposals/{proposal_id}/sign", sign_proposal, methods=["POST"]),
]
