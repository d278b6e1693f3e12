"""Console: enrollment tokens (create, list, revoke) with the exact agent command to
copy, and the list of revoked devices.

A token is shown once, right after it is made: only its SHA-256 is stored. A
group-limited user makes and sees tokens only for their own groups, and cannot
create new groups (a new group would lie outside their scope).
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.server.actions.keyrings import current_fingerprint
from sekimori.server.agent_command import agent_url, enroll_command
from sekimori.server.console.i18n import N_
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.device_queries import groups_in_scope, revoked_devices
from sekimori.server.store.groups import validate_group_name
from sekimori.server.store.tokens import IssuedToken, create_token, list_tokens, revoke_token

__all__ = ["routes"]

# Lifetimes offered, in hours, with their labels; capped by enrollment_token_max_hours.
LIFETIMES: tuple[tuple[int, str], ...] = (
    (1, N_("1 hour")),
    (24, N_("1 day")),
    (24 * 7, N_("7 days")),
    (24 * 30, N_("30 days")),
)
DEFAULT_LIFETIME_H = 24


def _lifetimes(ctx: PageContext) -> list[tuple[int, str]]:
    cap = ctx.console.settings.server.enrollment_token_max_hours
    return [(h, label) for h, label in LIFETIMES if h <= cap] or [(1, LIFETIMES[0][1])]


def _page(
    ctx: PageContext,
    *,
    issued: IssuedToken | None = None,
    command: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    return ctx.render(
        "enrollment.html",
        status=status,
        groups=groups_in_scope(ctx.engine, ctx.scope),
        may_create_group=ctx.scope.all_groups,
        lifetimes=_lifetimes(ctx),
        default_lifetime=DEFAULT_LIFETIME_H,
        tokens=list_tokens(ctx.engine, ctx.scope),
        revoked=revoked_devices(ctx.engine, ctx.scope),
        now=now_us(),
        issued=issued,
        command=command,
        error=error,
    )


@page("enroll")
def enrollment(ctx: PageContext) -> Response:
    return _page(ctx)


@page("enroll")
def create(ctx: PageContext) -> Response:
    allowed_groups = groups_in_scope(ctx.engine, ctx.scope)
    new_group = ctx.field("new_group").strip()
    group = new_group or ctx.field("group")
    if new_group and not ctx.scope.all_groups:
        return _page(ctx, error="group_not_allowed", status=403)
    if not new_group and group not in allowed_groups:
        return _page(ctx, error="group_not_allowed", status=403)
    try:
        group = validate_group_name(group)
        hours = int(ctx.field("lifetime_hours", str(DEFAULT_LIFETIME_H)))
    except ValueError:
        return _page(ctx, error="bad_input", status=400)
    if hours not in {h for h, _ in _lifetimes(ctx)}:
        return _page(ctx, error="bad_input", status=400)
    issued = create_token(
        ctx.engine, group=group, ttl_seconds=hours * 3600, created_by=ctx.user.username
    )
    ctx.audit(
        "enrollment.token_create",
        str(issued.id),
        group=group,
        new_group=bool(new_group) and new_group not in allowed_groups,
        expires_us=issued.expires_us,
    )
    fingerprint = ctx.console.pki.ca_fingerprint() if ctx.console.pki else ""
    command = enroll_command(
        agent_url(ctx.console.settings.server),
        issued.token,
        fingerprint,
        current_fingerprint(ctx.engine),
    )
    return _page(ctx, issued=issued, command=command)


@page("enroll")
def revoke(ctx: PageContext) -> Response:
    try:
        token_id = int(ctx.request.path_params["token_id"])
    except ValueError:
        return ctx.render("not_found.html", status=404)
    group = revoke_token(ctx.engine, token_id, ctx.scope)
    if group is None:
        return _page(ctx, error="token_not_revocable", status=404)
    ctx.audit("enrollment.token_revoke", str(token_id), group=group)
    return RedirectResponse("/enrollment", status_code=303)


routes: list[BaseRoute] = [
    Route("/enrollment", enrollment, methods=["GET"]),
    Route("/enrollment/tokens", create, methods=["POST"]),
    Route("/enrollment/tokens/{token_id}/revoke", revoke, methods=["POST"]),
]
