"""Console: remote actions (permission ``actions``; docs/actions.md).

* ``GET /actions``: commands whose targets include devices of the user's groups —
  state, action, devices, requester, signers, results.
* ``GET /actions/new?device=ID&action=NAME`` and ``POST /actions``: the form; targets
  are devices (ids or host names) and/or a group, every one checked against the
  user's scope (a device of another group is reported like an unknown one). Low-risk
  actions (message, screenshot, refresh_inventory) need no signature and go at once.
* ``GET /actions/{nonce}``: what will be signed, in words (action, parameters, number
  of devices, expiry, digest), the "Sign with passkey" button, signers, and the
  per-device results (``/actions/{nonce}/targets``, polled by htmx until finished).
* ``POST /actions/{nonce}/sign``: a passkey assertion over the command's digest,
  verified against the keyring by the service before it is stored. Only a user whose
  scope covers every target may sign.
* ``POST /actions/{nonce}/cancel``; ``GET /actions/{nonce}/devices/{id}/file``: a
  collected file (attachment, audited).
* ``GET /actions/library``, ``POST /actions/library``: scripts (text or file) and
  ``.deb`` packages, with their SHA-256.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.protocol.actions import LOW_RISK, MAX_ATTACHMENT_BYTES
from sekimori.server import actions as service
from sekimori.server.actions.passkeys import PasskeyError, assertion_signature, b64url
from sekimori.server.blobs.local import blob_store_for
from sekimori.server.console.action_form import (
    ACTION_LABELS,
    LIFETIMES,
    describe_params,
    parse_params,
)
from sekimori.server.console.i18n import gettext
from sekimori.server.console.routes.operators import (
    allow_list,
    read_assertion,
    signing_credentials,
)
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.action_scope import (
    MAX_TARGETS,
    hostnames_in_scope,
    resolve_targets,
    target_state_counts,
)
from sekimori.server.store.actions import TargetRow
from sekimori.server.store.device_queries import groups_in_scope

__all__ = ["routes"]

_NONCE = re.compile(r"^[0-9a-f]{32}$")
_FINISHED = {"done", "failed", "refused", "expired"}
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _form_values(ctx: PageContext) -> dict[str, str]:
    if ctx.form is None:
        return {}
    return {k: v for k, v in ctx.form.items() if isinstance(v, str)}


def _form_page(
    ctx: PageContext,
    values: Mapping[str, str],
    *,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> Response:
    library = service.list_library(ctx.engine)
    return ctx.render(
        "actions_new.html",
        status=status,
        values=values,
        errors=errors or {},
        labels=ACTION_LABELS,
        low_risk=LOW_RISK,
        groups=groups_in_scope(ctx.engine, ctx.scope),
        scripts=[i for i in library if i.kind == "script"],
        packages=[i for i in library if i.kind == "package"],
        lifetimes=LIFETIMES,
        has_keyring=service.current_fingerprint(ctx.engine) is not None,
    )


@page("actions")
def index(ctx: PageContext) -> Response:
    commands = service.list_commands(ctx.engine, ctx.scope, limit=100)
    mine = set(signing_credentials(ctx).values())
    waiting = {
        c.nonce
        for c in commands
        if c.state == "awaiting_signatures"
        and mine
        and not any(s.key_id in mine for s in c.signatures)
    }
    summaries = target_state_counts(ctx.engine, ctx.scope, [c.nonce for c in commands])
    return ctx.render(
        "actions.html",
        commands=commands,
        waiting=waiting,
        summaries=summaries,
        labels=ACTION_LABELS,
        now=now_us(),
    )


def _summary(targets: list[TargetRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in targets:
        counts[t.state] = counts.get(t.state, 0) + 1
    return counts


@page("actions")
def new(ctx: PageContext) -> Response:
    values = {
        "action": ctx.query.get("action", "message"),
        "devices": "\n".join(d[:64] for d in ctx.query.getlist("device")[:100]),
        "lifetime": "600",
    }
    return _form_page(ctx, values)


def _lifetime(values: Mapping[str, str]) -> int | None:
    raw = values.get("lifetime", "600")
    allowed = {s for s, _ in LIFETIMES}
    return int(raw) if raw.isdigit() and int(raw) in allowed else None


@page("actions")
def create(ctx: PageContext) -> Response:
    values = _form_values(ctx)
    action = values.get("action", "")
    library = {i.sha256: i for i in service.list_library(ctx.engine)}
    parsed = parse_params(action, values, library)
    errors = dict(parsed.errors)
    names = [n for n in values.get("devices", "").split() if n]
    group = values.get("group", "").strip()
    targets = resolve_targets(ctx.engine, ctx.scope, names=names, group=group)
    if targets.unknown:
        errors["devices"] = gettext("Unknown device, or not in your groups: %(names)s") % {
            "names": ", ".join(targets.unknown[:5])
        }
    if targets.group_refused:
        errors["group"] = gettext("Unknown group, or not one of yours.")
    if not targets.devices and "devices" not in errors and "group" not in errors:
        errors["devices"] = gettext("Choose at least one device or a group.")
    if len(targets.devices) > MAX_TARGETS:
        errors["devices"] = gettext("At most %(n)s devices per action.") % {"n": MAX_TARGETS}
    lifetime = _lifetime(values)
    if lifetime is None:
        errors["lifetime"] = gettext("Choose a lifetime.")
    reason = values.get("reason", "").strip()
    if len(reason) > 500:
        errors["reason"] = gettext("At most 500 characters.")
    if errors or parsed.params is None or lifetime is None:
        ctx.audit("action.create_refused", action[:32], errors=sorted(errors))
        return _form_page(ctx, values, errors=errors, status=400)
    try:
        nonce = service.create_command(
            ctx.engine,
            parsed.params,
            [d.id for d in targets.devices],
            requested_by=ctx.user.username,
            reason=reason,
            lifetime_s=lifetime,
        )
    except service.ActionError as exc:
        return _form_page(ctx, values, errors={"action": exc.message}, status=400)
    # Audited by the service (action.create) with the digest and devices.
    return RedirectResponse(f"/actions/{nonce}", status_code=303)


def _command(ctx: PageContext) -> tuple[service.CommandView, list[TargetRow]] | None:
    """The command and its targets within the user's scope; None when it is unknown
    or has no target in scope (the same answer)."""
    nonce = ctx.request.path_params["nonce"]
    if not _NONCE.match(nonce):
        return None
    try:
        view = service.command_view(ctx.engine, nonce)
    except service.ActionNotFound:
        return None
    targets = service.target_results(ctx.engine, nonce, ctx.scope)
    if not targets:
        return None
    return view, targets


def _finished(view: service.CommandView, targets: list[TargetRow]) -> bool:
    if view.state in {"expired", "cancelled"}:
        return True
    return all(t.state in _FINISHED for t in targets)


def _targets_context(
    ctx: PageContext, view: service.CommandView, targets: list[TargetRow]
) -> dict[str, Any]:
    return {
        "command": view,
        "targets": targets,
        "hostnames": hostnames_in_scope(ctx.engine, ctx.scope, [t.device_id for t in targets]),
        "finished": _finished(view, targets),
        "summary": _summary(targets),
    }


@page("actions")
def detail(ctx: PageContext) -> Response:
    found = _command(ctx)
    if found is None:
        return ctx.render("not_found.html", status=404)
    view, targets = found
    credentials = signing_credentials(ctx)
    mine = set(credentials.values())
    covers_all = len(targets) == view.device_count
    return ctx.render(
        "actions_detail.html",
        labels=ACTION_LABELS,
        params=describe_params(view.body.params),
        challenge=b64url(view.digest),
        allow=allow_list(credentials),
        has_credentials=bool(credentials),
        signed_by_me=any(s.key_id in mine for s in view.signatures),
        covers_all=covers_all,
        now=now_us(),
        **_targets_context(ctx, view, targets),
    )


@page("actions")
def targets_fragment(ctx: PageContext) -> Response:
    found = _command(ctx)
    if found is None:
        return ctx.render("not_found.html", status=404)
    view, targets = found
    return ctx.render("actions_targets.html", **_targets_context(ctx, view, targets))


def _json_error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@page("actions")
def sign(ctx: PageContext) -> Response:
    found = _command(ctx)
    if found is None:
        return _json_error(gettext("Unknown action."), 404)
    view, targets = found
    if len(targets) != view.device_count:
        # Signing vouches for every target: a user who cannot see them all may not.
        ctx.audit("action.sign_refused", view.nonce, reason="targets outside scope")
        return _json_error(
            gettext("This action also targets devices outside your groups: you cannot sign it."),
            403,
        )
    try:
        signature = assertion_signature(read_assertion(ctx), signing_credentials(ctx))
        state = service.add_command_signature(ctx.engine, view.nonce, signature, ctx.user.username)
    except (PasskeyError, service.ActionError) as exc:
        ctx.audit("action.sign_refused", view.nonce, reason=str(exc)[:300])
        return _json_error(gettext("The signature was refused: %(reason)s") % {"reason": str(exc)})
    # Audited by the service (action.sign).
    return JSONResponse({"redirect": f"/actions/{view.nonce}", "state": state})


@page("actions")
def cancel(ctx: PageContext) -> Response:
    found = _command(ctx)
    if found is None:
        return ctx.render("not_found.html", status=404)
    view, targets = found
    if len(targets) != view.device_count:
        return ctx.render("forbidden.html", status=403)
    # Finished meanwhile: the page shows its state.
    with contextlib.suppress(service.ActionError):
        service.cancel_command(ctx.engine, view.nonce, ctx.user.username)
    return RedirectResponse(f"/actions/{view.nonce}", status_code=303)


@page("actions")
def collected(ctx: PageContext) -> Response:
    found = _command(ctx)
    if found is None:
        return ctx.render("not_found.html", status=404)
    view, targets = found
    device_id = ctx.request.path_params["device_id"]
    target = next((t for t in targets if t.device_id == device_id), None)
    if target is None or not target.data_sha256:
        return ctx.render("not_found.html", status=404)
    try:
        data = service.collected_file(
            ctx.engine,
            blob_store_for(ctx.console.settings.data_path),
            view.nonce,
            device_id,
            by=ctx.user.username,
        )
    except service.ActionError as exc:
        ctx.audit("action.download_failed", view.nonce, device_id=device_id, error=exc.message)
        return Response(exc.message, status_code=404, media_type="text/plain; charset=utf-8")
    path = getattr(view.body.params, "path", "file")
    name = _FILENAME_UNSAFE.sub("_", str(path).rsplit("/", 1)[-1]) or "file"
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@page("actions")
def library(ctx: PageContext) -> Response:
    return _library_page(ctx)


def _library_page(
    ctx: PageContext, *, error: str = "", added: str = "", status: int = 200
) -> Response:
    return ctx.render(
        "actions_library.html",
        status=status,
        library_items=service.list_library(ctx.engine),
        error=error,
        added=added or ctx.query.get("added", "")[:64],
        max_bytes=MAX_ATTACHMENT_BYTES,
    )


@page(
    "actions",
    max_files=1,
    max_part_size=MAX_ATTACHMENT_BYTES + 1024,
    max_body=MAX_ATTACHMENT_BYTES + 64 * 1024,
)
def library_add(ctx: PageContext) -> Response:
    kind = ctx.field("kind")
    name = ctx.field("name").strip()
    upload = ctx.form.get("file") if ctx.form is not None else None
    content = b""
    filename = ctx.field("filename").strip()
    if isinstance(upload, UploadFile) and upload.filename:
        content = upload.file.read(MAX_ATTACHMENT_BYTES + 1)
        filename = filename or upload.filename.rsplit("/", 1)[-1]
    elif kind == "script":
        content = ctx.field("text").replace("\r\n", "\n").encode()
        filename = filename or (name.replace("/", "_") + ".sh")
    if kind not in ("script", "package"):
        return _library_page(ctx, error=gettext("Choose script or package."), status=400)
    try:
        digest = service.add_library_item(
            ctx.engine,
            kind,  # type: ignore[arg-type]
            name=name or filename,
            filename=filename,
            content=content,
            interpreter=ctx.field("interpreter", "sh"),
            by=ctx.user.username,
        )
    except service.ActionError as exc:
        return _library_page(ctx, error=exc.message, status=400)
    # Audited by the service (library.add).
    return RedirectResponse(f"/actions/library?added={digest}", status_code=303)


routes: list[BaseRoute] = [
    Route("/actions", index, methods=["GET"]),
    Route("/actions", create, methods=["POST"]),
    Route("/actions/new", new, methods=["GET"]),
    Route("/actions/library", library, methods=["GET"]),
    Route("/actions/library", library_add, methods=["POST"]),
    Route("/actions/{nonce}", detail, methods=["GET"]),
    Route("/actions/{nonce}/targets", targets_fragment, methods=["GET"]),
    Route("/actions/{nonce}/sign", sign, methods=["POST"]),
    Route("/actions/{nonce}/cancel", cancel, methods=["POST"]),
    Route("/actions/{nonce}/devices/{device_id}/file", collected, methods=["GET"]),
]
