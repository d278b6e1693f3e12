"""The request plumbing every console page shares: who is asking, may they, and
rendering the answer in their language.

A page is a plain function ``handler(ctx: PageContext) -> Response`` wrapped by
``page(permission)``. The wrapper, before the handler runs:

1. loads the session from the cookie (no session, or one waiting for its second
   factor: redirect to /login);
2. loads the user and checks the role's permission (else 403 — menus hide links,
   but this check is what protects a URL typed by hand);
3. for POST, parses the form and checks the CSRF token (form field ``csrf_token`` or
   header ``X-CSRF-Token``) and that the request is not cross-site;
4. runs the handler in a worker thread (store calls are blocking) with the user's
   locale active.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sekimori.server.console import i18n
from sekimori.server.console.permissions import Permission, allowed
from sekimori.server.pki import PKI
from sekimori.server.store.audit import append_audit
from sekimori.server.store.scope import Scope as DeviceScope
from sekimori.server.store.sessions import Session, load_session
from sekimori.server.store.users import User, UserNotFound, get_user
from sekimori.settings import Settings

__all__ = [
    "COOKIE",
    "Console",
    "LoginLimiter",
    "PageContext",
    "SecurityHeaders",
    "client_ip",
    "page",
]

COOKIE = "sekimori_session"
MAX_FORM_FIELDS = 200


class LoginLimiter:
    """Failed logins per client address in a sliding window (in memory, per replica;
    the per-account lockout in the store holds across replicas)."""

    def __init__(self, limit: int = 20, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, ip: str) -> bool:
        recent = self._recent(ip)
        return len(recent) >= self.limit

    def failed(self, ip: str) -> None:
        self._recent(ip).append(time.monotonic())
        if len(self._failures) > 10_000:  # bounded: forget the quietest addresses
            for key in [k for k, v in self._failures.items() if not v][:5_000]:
                del self._failures[key]

    def _recent(self, ip: str) -> deque[float]:
        now = time.monotonic()
        entries = self._failures.setdefault(ip, deque())
        while entries and now - entries[0] > self.window_s:
            entries.popleft()
        return entries


@dataclass
class Console:
    """Everything a page needs, built once by the app factory."""

    settings: Settings
    engine: sa.Engine
    pki: PKI | None
    templates: Environment
    catalogs: i18n.Catalogs
    connected: Callable[[], Collection[str]]
    tls: bool
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    @property
    def idle_s(self) -> float:
        return self.settings.server.console_session_idle_minutes * 60

    @property
    def max_age_s(self) -> float:
        return self.settings.server.console_session_max_hours * 3600

    def activate_locale(self, user_setting: str | None, request: Request) -> str:
        lang = i18n.pick_locale(user_setting, request.headers.get("accept-language"))
        i18n.use_locale(lang, self.catalogs.get(lang))
        return lang

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        html = self.templates.get_template(name).render({"request": request, **context})
        return HTMLResponse(html, status_code=status)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


@dataclass
class PageContext:
    request: Request
    console: Console
    user: User
    session: Session
    form: FormData | None
    locale: str

    @property
    def engine(self) -> sa.Engine:
        return self.console.engine

    @property
    def scope(self) -> DeviceScope:
        return self.user.scope

    @property
    def query(self) -> QueryParams:
        return self.request.query_params

    @property
    def htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    def field(self, name: str, default: str = "") -> str:
        if self.form is None:
            return default
        value = self.form.get(name, default)
        return value if isinstance(value, str) else default

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.console.render(
            self.request,
            name,
            {
                "user": self.user,
                "csrf_token": self.session.csrf_token,
                "can": lambda p: allowed(self.user.role, p),
                "path": self.request.url.path,
                **context,
            },
            status,
        )

    def audit(self, action: str, target: str = "", /, **detail: Any) -> None:
        """Write an audit entry as this user (views of people's activity, changes).
        ``action`` and ``target`` are positional-only, so details may use those names."""
        append_audit(
            self.engine,
            actor=self.user.username,
            action=action,
            target=target,
            detail=detail,
            client_ip=client_ip(self.request),
        )


Handler = Callable[[PageContext], Response]


def _cross_site(request: Request) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin.split("://", 1)[-1] != request.headers.get("host", "")
    return origin == "null"


def _login_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    location = "/login?next=" + quote(target, safe="")
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def _length_within(request: Request, limit: int) -> bool:
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) <= limit


def page(
    permission: Permission,
    *,
    max_files: int = 0,
    max_part_size: int = 1024 * 1024,
    max_body: int = 0,
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """``max_files``: file parts a POST may carry (none unless a page takes uploads).
    ``max_part_size``: the largest plain form field. ``max_body``: when set, a POST
    must declare its length and stay within it (413 otherwise) — checked before the
    form is read, since file parts are spooled to disk whatever their size."""

    def decorate(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            token = request.cookies.get(COOKIE, "")
            session = await run_in_threadpool(
                load_session, console.engine, token, idle_s=console.idle_s
            )
            if session is None or session.mfa_pending:
                return _login_redirect(request)
            try:
                user = await run_in_threadpool(get_user, console.engine, session.user_id)
            except UserNotFound:
                return _login_redirect(request)
            form: FormData | None = None
            if request.method == "POST":
                if _cross_site(request):
                    return Response("cross-site request refused", status_code=403)
                if max_body and not _length_within(request, max_body):
                    return Response("request body too large", status_code=413)
                form = await request.form(
                    max_files=max_files, max_fields=MAX_FORM_FIELDS, max_part_size=max_part_size
                )
                sent = request.headers.get("x-csrf-token") or form.get("csrf_token") or ""
                if not isinstance(sent, str) or not hmac.compare_digest(
                    sent.encode(), session.csrf_token.encode()
                ):
                    return Response("missing or wrong CSRF token", status_code=403)

            def run() -> Response:
                lang = console.activate_locale(user.locale, request)
                ctx = PageContext(request, console, user, session, form, lang)
                if not allowed(user.role, permission):
                    return ctx.render("forbidden.html", status=403)
                return handler(ctx)

            try:
                return await run_in_threadpool(run)
            finally:
                await request.close()  # uploaded files' temporary storage

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return decorate


class SecurityHeaders:
    """Headers on every console response: no framing, no sniffing, scripts and styles
    only from the server itself (the vendored htmx and chart library); and a
    Server-Timing header with the time the server spent."""

    def __init__(self, app: ASGIApp, *, tls: bool) -> None:
        self.app = app
        self.headers = [
            (
                b"content-security-policy",
                b"default-src 'self'; img-src 'self' data:; "
                b"style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
                b"form-action 'self'; base-uri 'none'; object-src 'none'",
            ),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"cache-control", b"no-store"),
        ]
        if tls:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                existing = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k, v)
                    for k, v in self.headers
                    if k not in existing and not (static and k == b"cache-control")
                ]
                # Server time until the response starts (the page is rendered by
                # then): what `sekimori bench console` reads, and what a browser's
                # developer tools show.
                elapsed_ms = (time.perf_counter() - started) * 1000
                extra.append((b"server-timing", f"app;dur={elapsed_ms:.1f}".encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
