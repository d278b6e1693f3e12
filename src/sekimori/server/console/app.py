"""The console app factory: pages, login, static assets and the ops endpoints, on
the console port. HTTPS unless the console listens on loopback only (see
``console_uses_tls``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection
from pathlib import Path

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from sekimori.server.console import auth, i18n
from sekimori.server.console.routes import (
    account,
    actions,
    alerts,
    audit,
    dashboard,
    devices,
    enrollment,
    live,
    logs,
    operators,
    policies,
    reports,
    rules,
    screens,
    users,
    vulnerabilities,
)
from sekimori.server.console.templating import make_environment
from sekimori.server.console.web import Console, SecurityHeaders
from sekimori.server.live import LiveSessions
from sekimori.server.metrics import Metrics
from sekimori.server.ops import ops_routes
from sekimori.server.pki import PKI
from sekimori.settings import ServerSettings, Settings

__all__ = ["console_uses_tls", "create_console_app"]

_STATIC = Path(__file__).parent / "static"


class ConsoleTLSRefused(ValueError):
    pass


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_uses_tls(server: ServerSettings) -> bool:
    """Plain HTTP only where nobody else can listen in: on loopback. Off loopback
    the console serves HTTPS; "off" there is refused."""
    if server.console_tls == "on":
        return True
    if _loopback(server.console_host):
        return False
    if server.console_tls == "off":
        raise ConsoleTLSRefused(
            f"console_tls = off is refused on {server.console_host}: passwords and session "
            "cookies would cross the network in clear; use a loopback address or TLS"
        )
    return True


def create_console_app(
    settings: Settings,
    engine: sa.Engine,
    metrics: Metrics,
    *,
    pki: PKI | None,
    connected: Callable[[], Collection[str]],
    live_sessions: LiveSessions | None = None,
) -> Starlette:
    tls = console_uses_tls(settings.server)
    console = Console(
        settings=settings,
        engine=engine,
        pki=pki,
        templates=make_environment(settings.server.console_timezone),
        catalogs=i18n.Catalogs(),
        connected=connected,
        tls=tls,
    )
    routes: list[BaseRoute] = [
        *ops_routes(engine, metrics, lambda: len(connected())),
        *auth.routes,
        *dashboard.routes,
        *alerts.routes,
        *screens.routes,
        *live.routes,
        *devices.routes,
        *logs.routes,
        *reports.routes,
        *enrollment.routes,
        *audit.routes,
        *users.routes,
        *policies.routes,
        *rules.routes,
        *account.routes,
        *actions.routes,
        *operators.routes,
        *vulnerabilities.routes,
        Mount("/static", app=StaticFiles(directory=_STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.console = console
    app.state.live = live_sessions  # None: live view unavailable (no agent channel)
    app.add_middleware(SecurityHeaders, tls=tls)
    return app
