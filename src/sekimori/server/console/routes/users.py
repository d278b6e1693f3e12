"""Console: user accounts (administrators only).

Every change is audited with its old and new values. An administrator cannot
disable or demote their own account: the last administrator locking everyone out
would need the CLI to recover.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sekimori.clock import now_us
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.sessions import end_user_sessions
from sekimori.server.store.users import (
    ROLES,
    Role,
    User,
    UserNotFound,
    create_user,
    generate_password,
    get_user,
    group_names,
    list_users,
    set_access,
    set_disabled,
    set_password,
    set_totp_secret,
    validate_username,
)

__all__ = ["routes"]


def _groups_label(all_groups: bool, names: list[str] | tuple[str, ...]) -> str | list[str]:
    return "all" if all_groups else sorted(names)


def _chosen_access(ctx: PageContext) -> tuple[Role | None, bool, list[str], str | None]:
    """Role, all groups, groups from the form; or an error code."""
    role = ctx.field("role")
    all_groups = ctx.field("all_groups") == "on"
    known = set(group_names(ctx.engine))
    chosen = [g for g in (ctx.form.getlist("groups") if ctx.form else []) if isinstance(g, str)]
    if role not in ROLES:
        return None, all_groups, chosen, "bad_role"
    if any(g not in known for g in chosen):
        return None, all_groups, chosen, "unknown_group"
    if not all_groups and not chosen:
        return None, all_groups, chosen, "no_groups"
    return role, all_groups, sorted(set(chosen)), None


def _list(ctx: PageContext, *, status: int = 200, **context: Any) -> Response:
    return ctx.render(
        "users.html",
        status=status,
        users=list_users(ctx.engine),
        groups=group_names(ctx.engine),
        roles=ROLES,
        now=now_us(),
        **context,
    )


def _one(ctx: PageContext, target: User, *, status: int = 200, **context: Any) -> Response:
    return ctx.render(
        "user.html",
        status=status,
        target=target,
        groups=group_names(ctx.engine),
        roles=ROLES,
        now=now_us(),
        **context,
    )


def _target(ctx: PageContext) -> User | None:
    try:
        return get_user(ctx.engine, int(ctx.request.path_params["user_id"]))
    except UserNotFound:
        return None


def _not_found(ctx: PageContext) -> Response:
    return ctx.render("not_found.html", status=404)


@page("users")
def users_page(ctx: PageContext) -> Response:
    return _list(ctx)


@page("users")
def create(ctx: PageContext) -> Response:
    name = ctx.field("username").strip()
    role, all_groups, chosen, error = _chosen_access(ctx)
    try:
        name = validate_username(name)
    except ValueError:
        error = "bad_name"
    if error is not None or role is None:
        return _list(ctx, status=400, error=error, form_name=name)
    password = generate_password()
    try:
        create_user(
            ctx.engine,
            name,
            password,
            role,
            groups_=[] if all_groups else chosen,
            all_groups=all_groups,
        )
    except ValueError:
        return _list(ctx, status=400, error="exists", form_name=name)
    ctx.audit("user.create", name, role=role, groups=_groups_label(all_groups, chosen))
    return _list(ctx, created=name, new_password=password)


@page("users")
def user_page(ctx: PageContext) -> Response:
    target = _target(ctx)
    return _not_found(ctx) if target is None else _one(ctx, target)


@page("users")
def change_access(ctx: PageContext) -> Response:
    target = _target(ctx)
    if target is None:
        return _not_found(ctx)
    role, all_groups, chosen, error = _chosen_access(ctx)
    if error is None and target.id == ctx.user.id and role != "administrator":
        error = "self_demote"
    if error is not None or role is None:
        return _one(ctx, target, status=400, error=error)
    old_groups = _groups_label(target.all_groups, target.groups)
    new_groups = _groups_label(all_groups, chosen)
    set_access(ctx.engine, target.id, role=role, all_groups=all_groups, groups_=chosen)
    changes: dict[str, Any] = {}
    if role != target.role:
        changes["role"] = {"old": target.role, "new": role}
    if old_groups != new_groups:
        changes["groups"] = {"old": old_groups, "new": new_groups}
    if changes:
        ctx.audit("user.access", target.username, **changes)
    return _one(ctx, get_user(ctx.engine, target.id), message="access_saved")


@page("users")
def reset_password(ctx: PageContext) -> Response:
    target = _target(ctx)
    if target is None:
        return _not_found(ctx)
    password = generate_password()
    set_password(ctx.engine, target.id, password)
    ended = end_user_sessions(ctx.engine, target.id)
    ctx.audit("user.password_reset", target.username, sessions_ended=ended)
    # On one's own account this session ended too: the password is shown once, and
    # the next request goes to the login page.
    return _one(
        ctx,
        get_user(ctx.engine, target.id),
        new_password=password,
        own=target.id == ctx.user.id,
    )


def _set_disabled(ctx: PageContext, disabled: bool) -> Response:
    target = _target(ctx)
    if target is None:
        return _not_found(ctx)
    if disabled and target.id == ctx.user.id:
        return _one(ctx, target, status=400, error="self_disable")
    set_disabled(ctx.engine, target.id, disabled)
    ended = end_user_sessions(ctx.engine, target.id) if disabled else 0
    if target.disabled != disabled:
        ctx.audit(
            "user.disable" if disabled else "user.enable",
            target.username,
            disabled={"old": target.disabled, "new": disabled},
            sessions_ended=ended,
        )
    return _one(
        ctx,
        get_user(ctx.engine, target.id),
        message="disabled" if disabled else "enabled",
    )


@page("users")
def disable(ctx: PageContext) -> Response:
    return _set_disabled(ctx, True)


@page("users")
def enable(ctx: PageContext) -> Response:
    return _set_disabled(ctx, False)


@page("users")
def reset_totp(ctx: PageContext) -> Response:
    target = _target(ctx)
    if target is None:
        return _not_found(ctx)
    set_totp_secret(ctx.engine, target.id, None)
    if target.totp_enabled:
        ctx.audit("user.totp_reset", target.username, totp={"old": "on", "new": "off"})
    return _one(ctx, get_user(ctx.engine, target.id), message="totp_reset")


routes: list[BaseRoute] = [
    Route("/users", users_page, methods=["GET"]),
    Route("/users", create, methods=["POST"]),
    Route("/users/{user_id:int}", user_page, methods=["GET"]),
    Route("/users/{user_id:int}/access", change_access, methods=["POST"]),
    Route("/users/{user_id:int}/password", reset_password, methods=["POST"]),
    Route("/users/{user_id:int}/disable", disable, methods=["POST"]),
    Route("/users/{user_id:int}/enable", enable, methods=["POST"]),
    Route("/users/{user_id:int}/totp/reset", reset_totp, methods=["POST"]),
]
