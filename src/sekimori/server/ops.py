"""The operations HTTP app: /healthz for load balancers and /metrics for Prometheus.

Served on the console port (loopback by default), never on the agent endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sekimori import __version__
from sekimori.server.metrics import Metrics

__all__ = ["create_ops_app", "ops_routes"]


def create_ops_app(engine: sa.Engine, metrics: Metrics, connected: Callable[[], int]) -> Starlette:
    return Starlette(routes=ops_routes(engine, metrics, connected))


def ops_routes(engine: sa.Engine, metrics: Metrics, connected: Callable[[], int]) -> list[Route]:
    def _ping_store() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    async def healthz(_request: Request) -> Response:
        try:
            await asyncio.wait_for(asyncio.to_thread(_ping_store), 5)
        except (sa.exc.SQLAlchemyError, TimeoutError):
            return JSONResponse({"status": "unhealthy", "store": "unreachable"}, status_code=503)
        return JSONResponse(
            {"status": "ok", "version": __version__, "store": "ok", "agents_connected": connected()}
        )

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/metrics", prometheus)]
