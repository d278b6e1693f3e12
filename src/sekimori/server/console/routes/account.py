"""Console: the signed-in user's own account — language, password, TOTP second factor."""

from __future__ import annotations

import io

import pyotp
import segno
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sekimori.server.console.auth import verify_totp
from sekimori.server.console.i18n import LOCALES
from sekimori.server.console.web import PageContext, page
from sekimori.server.store.sessions import end_user_sessions
from sekimori.server.store.users import (
    authenticate,
    record_totp_step,
    set_locale,
    set_password,
    set_totp_secret,
)

__all__ = ["routes", "totp_qr_svg"]


def totp_qr_svg(uri: str) -> str:
    """The enrolment QR code as inline SVG (no image request, no external service)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, xmldecl=False, svgns=True)
    return out.getvalue().decode("utf-8")


def _account(
    ctx: PageContext, *, message: str | None = None, error: str | None = None, status: int = 200
) -> Response:
    secret = ctx.field("totp_secret") or pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=ctx.user.username, issuer_name="Sekimori")
    return ctx.render(
        "account.html",
        status=status,
        message=message,
        error=error,
        totp_secret=secret,
        totp_qr=totp_qr_svg(uri),
        locales=LOCALES,
    )


@page("dashboard")
def account(ctx: PageContext) -> Response:
    return _account(ctx)


@page("dashboard")
def change_locale(ctx: PageContext) -> Response:
    lang = ctx.field("locale")
    set_locale(ctx.engine, ctx.user.id, lang if lang in LOCALES else None)
    ctx.audit("account.locale", ctx.user.username, locale=lang or "browser")
    back = ctx.request.headers.get("referer", "")
    host = ctx.request.headers.get("host", "")
    target = "/account"
    if host and "://" in back and back.split("://", 1)[1].startswith(host + "/"):
        target = "/" + back.split("://", 1)[1][len(host) + 1 :]
    return RedirectResponse(target, status_code=303)


@page("dashboard")
def change_password(ctx: PageContext) -> Response:
    current = ctx.field("current_password")
    new = ctx.field("new_password")
    if authenticate(ctx.engine, ctx.user.username, current).outcome != "ok":
        ctx.audit("account.password_failed", ctx.user.username)
        return _account(ctx, error="wrong_password", status=400)
    if new != ctx.field("new_password_again"):
        return _account(ctx, error="password_mismatch", status=400)
    try:
        set_password(ctx.engine, ctx.user.id, new)
    except ValueError:
        return _account(ctx, error="password_too_short", status=400)
    # Other sessions (another browser, a stolen cookie) end; this one goes too.
    end_user_sessions(ctx.engine, ctx.user.id)
    ctx.audit("account.password", ctx.user.username)
    return RedirectResponse("/login", status_code=303)


@page("dashboard")
def enable_totp(ctx: PageContext) -> Response:
    secret = ctx.field("totp_secret")
    try:
        valid_secret = len(secret) >= 16 and bool(pyotp.TOTP(secret).now())
    except (ValueError, TypeError):  # not base32
        valid_secret = False
    step = verify_totp(secret, ctx.field("code"), None) if valid_secret else None
    if step is None:
        return _account(ctx, error="bad_code", status=400)
    set_totp_secret(ctx.engine, ctx.user.id, secret)
    record_totp_step(ctx.engine, ctx.user.id, step)
    ctx.audit("account.totp_enabled", ctx.user.username)
    return _account(ctx, message="totp_enabled")


@page("dashboard")
def disable_totp(ctx: PageContext) -> Response:
    if authenticate(ctx.engine, ctx.user.username, ctx.field("current_password")).outcome != "ok":
        return _account(ctx, error="wrong_password", status=400)
    set_totp_secret(ctx.engine, ctx.user.id, None)
    ctx.audit("account.totp_disabled", ctx.user.username)
    return RedirectResponse("/account", status_code=303)


routes: list[BaseRoute] = [
    Route("/account", account, methods=["GET"]),
    Route("/account/locale", change_locale, methods=["POST"]),
    Route("/account/password", change_password, methods=["POST"]),
    Route("/account/totp", enable_totp, methods=["POST"]),
    Route("/account/totp/disable", disable_totp, methods=["POST"]),
]
