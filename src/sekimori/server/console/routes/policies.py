"""Console: collection policies per device group (administrators only).

- ``GET /policies``: every group in the user's scope, its current version (saved
  when, by whom) and how many devices run which version.
- ``GET /policies/{id}``: the editor (``policy_form``). ``POST .../preview``
  validates and shows what would change; ``POST .../save`` stores that exact
  document as the next version and redirects back with a notice.
- ``GET /policies/{id}/history``: every version with its author, comment and what it
  changed, and the devices that do not run the current one.

Lost updates: the editor carries the version it started from, and ``save_policy``
refuses a save on top of a version saved meanwhile (``StalePolicy``, checked in the
saving transaction). The page then shows what the other save changed and what
saving now would change, and asks again.

The save is audited by ``save_policy`` itself ("policy.save" with the diff, in the
same transaction as the version), so this module writes no audit entry of its own.
Reading policies shows no person's activity and is not audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.protocol.policy import COLLECTOR_NAMES, RETENTION_DOMAINS, Policy
from sekimori.server.console.i18n import N_, gettext
from sekimori.server.console.policy_changes import (
    COLLECTOR_LABELS,
    RETENTION_LABELS,
    ChangeRow,
    describe_changes,
)
from sekimori.server.console.policy_form import (
    DAYS,
    FieldError,
    PolicyForm,
    field_error,
    form_from_policy,
    form_from_submission,
    policy_document,
)
from sekimori.server.console.web import PageContext, client_ip, page
from sekimori.server.policies import PolicyError, diff_policies, policy_from_json, validate_policy
from sekimori.server.store.policies import (
    StalePolicy,
    StoredPolicy,
    UnknownGroup,
    current_policy,
    devices_by_policy_version,
    policy_history,
    save_policy,
)
from sekimori.server.store.policy_overview import GroupPolicy, devices_behind, group_policies

__all__ = ["routes"]

COMMENT_MAX_CHARS = 2000
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class VersionCount:
    version: int | None  # None: not reported yet
    devices: int
    current: bool


@dataclass(frozen=True, slots=True)
class GroupRow:
    group: GroupPolicy
    counts: list[VersionCount]
    behind: int


def _group(ctx: PageContext) -> GroupPolicy | None:
    found = group_policies(ctx.engine, ctx.scope, group_id=int(ctx.request.path_params["group_id"]))
    return found[0] if found else None


def _not_found(ctx: PageContext) -> Response:
    return ctx.render("not_found.html", status=404)


def _counts(ctx: PageContext) -> dict[int, list[VersionCount]]:
    by_group: dict[int, list[VersionCount]] = {}
    for row in devices_by_policy_version(ctx.engine, ctx.scope):
        by_group.setdefault(row.group_id, []).append(
            VersionCount(
                row.version, row.devices, row.version is not None and row.version == row.current
            )
        )
    for counts in by_group.values():
        # Newest version first, "not reported yet" last.
        counts.sort(key=lambda c: -1 if c.version is None else c.version, reverse=True)
    return by_group


def _row(group: GroupPolicy, counts: list[VersionCount]) -> GroupRow:
    return GroupRow(group, counts, sum(c.devices for c in counts if not c.current))


@page("policies")
def overview(ctx: PageContext) -> Response:
    counts = _counts(ctx)
    rows = [_row(g, counts.get(g.group_id, [])) for g in group_policies(ctx.engine, ctx.scope)]
    return ctx.render("policies.html", rows=rows)


def _editor(
    ctx: PageContext,
    group: GroupPolicy,
    form: PolicyForm,
    *,
    base_version: int,
    status: int = 200,
    **context: Any,
) -> Response:
    return ctx.render(
        "policies_edit.html",
        status=status,
        group=group,
        form=form,
        base_version=base_version,
        collectors=[(name, COLLECTOR_LABELS[name]) for name in COLLECTOR_NAMES],
        retention_domains=[(name, RETENTION_LABELS[name]) for name in RETENTION_DOMAINS],
        days=DAYS,
        comment_max=COMMENT_MAX_CHARS,
        **context,
    )


def _timezone(ctx: PageContext) -> str:
    return ctx.console.settings.server.console_timezone


@page("policies")
def editor(ctx: PageContext) -> Response:
    group = _group(ctx)
    if group is None:
        return _not_found(ctx)
    stored = current_policy(ctx.engine, group.group_id)
    policy = stored.policy if stored else Policy()
    # The notice after a save: only for the version the page shows (a hand-made
    # ?saved= cannot claim a save that did not happen).
    saved = ctx.query.get("saved", "")
    shown = stored.version if stored else 0
    return _editor(
        ctx,
        group,
        form_from_policy(policy, timezone=_timezone(ctx)),
        base_version=shown,
        saved=shown if saved == str(shown) and shown else None,
    )


def _base_version(ctx: PageContext) -> int | None:
    text = ctx.field("base_version")
    return int(text) if text.isdigit() else None


def _preview(
    ctx: PageContext,
    group: GroupPolicy,
    form: PolicyForm,
    policy: Policy,
    base_version: int,
    *,
    comment: str = "",
    status: int = 200,
    **context: Any,
) -> Response:
    """The editor with what saving ``policy`` would change against the group's
    current version; when that is not ``base_version``, also what was saved meanwhile
    (and the confirm form then starts from the new version)."""
    current = current_policy(ctx.engine, group.group_id)
    current_version = current.version if current else 0
    meanwhile: list[ChangeRow] = []
    newer: StoredPolicy | None = None
    if current_version != base_version and current is not None:
        newer = current
        base = next(
            (s for s in policy_history(ctx.engine, group.group_id) if s.version == base_version),
            None,
        )
        meanwhile = describe_changes(diff_policies(base.policy if base else None, current.policy))
    changes = describe_changes(diff_policies(current.policy if current else None, policy))
    return _editor(
        ctx,
        group,
        form,
        base_version=current_version,
        status=status,
        preview=True,
        changes=changes,
        document=_encoder.encode(policy).decode("utf-8"),
        next_version=current_version + 1,
        newer=newer,
        meanwhile=meanwhile,
        stale_refused=status == 409,
        comment=comment,
        **context,
    )


def _incomplete(ctx: PageContext, group: GroupPolicy, error: FieldError) -> Response:
    """The editor on the current version, with ``error`` (a form that lost a hidden
    field or was altered on the way: nothing is saved)."""
    stored = current_policy(ctx.engine, group.group_id)
    return _editor(
        ctx,
        group,
        form_from_policy(stored.policy if stored else Policy(), timezone=_timezone(ctx)),
        base_version=stored.version if stored else 0,
        status=400,
        error=error,
    )


def _incomplete_form() -> FieldError:
    return FieldError("", "", gettext(N_("The form was incomplete. Nothing was saved.")))


@page("policies")
def preview(ctx: PageContext) -> Response:
    group = _group(ctx)
    if group is None or ctx.form is None:
        return _not_found(ctx)
    base_version = _base_version(ctx)
    if base_version is None:
        return _incomplete(ctx, group, _incomplete_form())
    form = form_from_submission(ctx.form)
    try:
        policy = validate_policy(policy_document(form))
    except PolicyError as exc:
        return _editor(
            ctx, group, form, base_version=base_version, status=400, error=field_error(exc)
        )
    return _preview(ctx, group, form, policy, base_version)


@page("policies")
def save(ctx: PageContext) -> Response:
    group = _group(ctx)
    if group is None:
        return _not_found(ctx)
    base_version = _base_version(ctx)
    if base_version is None:
        return _incomplete(ctx, group, _incomplete_form())
    try:
        # The preview sent a validated document; validated again all the same.
        policy = policy_from_json(ctx.field("document"))
    except PolicyError as exc:
        return _incomplete(ctx, group, field_error(exc))
    form = form_from_policy(policy, timezone=_timezone(ctx))
    comment = ctx.field("comment").replace("\r\n", "\n").strip()
    if len(comment) > COMMENT_MAX_CHARS:
        return _preview(
            ctx,
            group,
            form,
            policy,
            base_version,
            comment=comment,
            status=400,
            comment_too_long=True,
        )
    try:
        version = save_policy(
            ctx.engine,
            group.group_id,
            policy,
            ctx.user.username,
            comment=comment,
            client_ip=client_ip(ctx.request),
            now_us=now_us(),
            expected_version=base_version,
        )
    except StalePolicy:
        return _preview(ctx, group, form, policy, base_version, comment=comment, status=409)
    except UnknownGroup:
        return _not_found(ctx)
    return RedirectResponse(f"/policies/{group.group_id}?saved={version}", status_code=303)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    stored: StoredPolicy
    changes: list[ChangeRow]
    first: bool  # the group's first version: changes are against the defaults


@page("policies")
def history(ctx: PageContext) -> Response:
    group = _group(ctx)
    if group is None:
        return _not_found(ctx)
    # One more than shown, so the oldest shown version has its predecessor to diff.
    versions = policy_history(ctx.engine, group.group_id, limit=101)
    entries = []
    for index, stored in enumerate(versions[:100]):
        older = versions[index + 1] if index + 1 < len(versions) else None
        if older is None and stored.version != 1:
            break  # its predecessor is not loaded (a group with over 100 versions)
        changes = diff_policies(older.policy if older else None, stored.policy)
        entries.append(HistoryEntry(stored, describe_changes(changes), older is None))
    counts = _counts(ctx).get(group.group_id, [])
    behind = devices_behind(ctx.engine, ctx.scope, group.group_id, group.version or 0)
    return ctx.render(
        "policies_history.html",
        group=group,
        entries=entries,
        row=_row(group, counts),
        behind=behind if group.version is not None else [],
    )


routes: list[BaseRoute] = [
    Route("/policies", overview, methods=["GET"]),
    Route("/policies/{group_id:int}", editor, methods=["GET"]),
    Route("/policies/{group_id:int}/preview", preview, methods=["POST"]),
    Route("/policies/{group_id:int}/save", save, methods=["POST"]),
    Route("/policies/{group_id:int}/history", history, methods=["GET"]),
]
