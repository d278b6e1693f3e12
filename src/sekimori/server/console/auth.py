"""Logging in and out: password (argon2id), optional TOTP, session cookie.

Every attempt, good or bad, goes into the audit trail. Failed attempts count against
the account (locked after LOCKOUT_FAILURES) and against the client address
(LoginLimiter). The login form has its own CSRF token (a double-submit cookie) since
there is no session yet.
"""

from __future__ import annotations

import hmac
import secrets
import time
from urllib.parse import urlsplit

import pyotp
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sekimori.server.console.web import COOKIE, Console, client_ip
from sekimori.server.store.audit import append_audit
from sekimori.server.store.sessions import (
    NewSession,
    create_session,
    end_session,
    load_session,
    promote_session,
)
from sekimori.server.store.users import (
    authenticate,
    get_user,
    mark_logged_in,
    record_totp_step,
    totp_secret,
)

__all__ = ["routes", "safe_next", "verify_totp"]

LOGIN_CSRF_COOKIE = "sekimori_login_csrf"
# A TOTP code is accepted one step (30 s) either side of now: clocks drift.
TOTP_WINDOW = 1


def safe_next(target: str | None) -> str:
    """Only a local path may follow login (no open redirect to another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target:
        return "/"
    return target


def verify_totp(
    secret: str, code: str, last_step: int | None, at: float | None = None
) -> int | None:
    """The time step the code belongs to, or None if wrong or already used."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if at is None else at
    step_now = int(now // totp.interval)
    for offset in range(-TOTP_WINDOW, TOTP_WINDOW + 1):
        step = step_now + offset
        if hmac.compare_digest(totp.generate_otp(step), code):
            if last_step is not None and step <= last_step:
                return None
            return step
    return None


def _set_session_cookie(console: Console, response: Response, new: NewSession) -> None:
    response.set_cookie(
        COOKIE,
        new.token,
        max_age=int(console.max_age_s),
        httponly=True,
        secure=console.tls,
        samesite="strict",
        path="/",
    )


def _login_form(
    console: Console,
    request: Request,
    *,
    error: str | None = None,
    status: int = 200,
    next_: str | None = None,
) -> Response:
    console.activate_locale(None, request)
    token = secrets.token_urlsafe(24)
    # After a failed attempt the form posted its own `next`: keep it for the retry.
    target = next_ or safe_next(request.query_params.get("next"))
    response = console.render(
        request, "login.html", {"error": error, "login_csrf": token, "next": target}, status
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        secure=console.tls,
        samesite="strict",
        path="/login",
    )
    return response


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    if request.method == "GET":
        return await run_in_threadpool(_login_form, console, request)
    form = await request.form(max_files=0, max_fields=10)
    sent = form.get("login_csrf")
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not isinstance(sent, str) or not cookie or not hmac.compare_digest(sent, cookie):
        return await run_in_threadpool(
            _login_form, console, request, error="form_expired", status=403
        )
    username = str(form.get("username", ""))[:128]
    password = str(form.get("password", ""))[:1024]
    ip = client_ip(request)
    target = safe_next(str(form.get("next", "/")))
    if console.limiter.blocked(ip):
        await run_in_threadpool(
            append_audit, console.engine, actor=username, action="login.throttled", client_ip=ip
        )
        return await run_in_threadpool(
            lambda: _login_form(console, request, error="throttled", status=429, next_=target)
        )
    result = await run_in_threadpool(authenticate, console.engine, username, password)
    if result.outcome != "ok" or result.user is None:
        console.limiter.failed(ip)
        await run_in_threadpool(
            append_audit,
            console.engine,
            actor=username,
            action="login.failed",
            detail={"reason": result.outcome},
            client_ip=ip,
        )
        error = "locked" if result.outcome == "locked" else "bad_credentials"
        return await run_in_threadpool(
            lambda: _login_form(console, request, error=error, status=401, next_=target)
        )
    user = result.user
    new = await run_in_threadpool(
        lambda: create_session(
            console.engine,
            user.id,
            mfa_pending=user.totp_enabled,
            max_age_s=console.max_age_s if not user.totp_enabled else 300,
            client_ip=ip,
        )
    )
    if user.totp_enabled:
        response: Response = RedirectResponse("/login/totp?next=" + _quote(target), status_code=303)
    else:
        await run_in_threadpool(mark_logged_in, console.engine, user.id)
        await run_in_threadpool(
            append_audit, console.engine, actor=user.username, action="login", client_ip=ip
        )
        response = RedirectResponse(target, status_code=303)
    _set_session_cookie(console, response, new)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _quote(target: str) -> str:
    from urllib.parse import quote  # noqa: PLC0415

    return quote(target, safe="")


async def login_totp(request: Request) -> Response:
    console: Console = request.app.state.console
    token = request.cookies.get(COOKIE, "")
    session = await run_in_threadpool(load_session, console.engine, token, idle_s=300)
    if session is None or not session.mfa_pending:
        return RedirectResponse("/login", status_code=303)
    target = safe_next(request.query_params.get("next"))

    def form(error: str | None = None, status: int = 200) -> Response:
        console.activate_locale(None, request)
        return console.render(
            request,
            "login_totp.html",
            {"error": error, "csrf_token": session.csrf_token, "next": target},
            status,
        )

    if request.method == "GET":
        return await run_in_threadpool(form)
    data = await request.form(max_files=0, max_fields=10)
    sent = data.get("csrf_token")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf_token):
        return Response("missing or wrong CSRF token", status_code=403)
    ip = client_ip(request)
    if console.limiter.blocked(ip):
        return await run_in_threadpool(form, "throttled", 429)
    user = await run_in_threadpool(get_user, console.engine, session.user_id)
    secret, last_step = await run_in_threadpool(totp_secret, console.engine, user.id)
    step = verify_totp(secret or "", str(data.get("code", "")), last_step)
    if (
        secret is None
        or step is None
        or not await run_in_threadpool(record_totp_step, console.engine, user.id, step)
    ):
        console.limiter.failed(ip)
        await run_in_threadpool(
            append_audit,
            console.engine,
            actor=user.username,
            action="login.totp_failed",
            client_ip=ip,
        )
        return await run_in_threadpool(form, "bad_code", 401)
    new = await run_in_threadpool(
        lambda: promote_session(console.engine, session, max_age_s=console.max_age_s, client_ip=ip)
    )
    await run_in_threadpool(mark_logged_in, console.engine, user.id)
    await run_in_threadpool(
        append_audit,
        console.engine,
        actor=user.username,
        action="login",
        detail={"second_factor": "totp"},
        client_ip=ip,
    )
    response = RedirectResponse(safe_next(str(data.get("next", target))), status_code=303)
    _set_session_cookie(console, response, new)
    return response


async def logout(request: Request) -> Response:
    console: Console = request.app.state.console
    token = request.cookies.get(COOKIE, "")
    session = await run_in_threadpool(load_session, console.engine, token, idle_s=console.idle_s)
    if session is not None:
        form = await request.form(max_files=0, max_fields=10)
        sent = request.headers.get("x-csrf-token") or form.get("csrf_token") or ""
        if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf_token):
            return Response("missing or wrong CSRF token", status_code=403)
        user = await run_in_threadpool(get_user, console.engine, session.user_id)
        await run_in_threadpool(end_session, console.engine, token)
        await run_in_threadpool(
            append_audit,
            console.engine,
            actor=user.username,
            action="logout",
            client_ip=client_ip(request),
        )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


routes = [
    Route("/login", login, methods=["GET", "POST"]),
    Route("/login/totp", login_totp, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
]
