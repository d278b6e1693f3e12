"""The server process: agent channel, ingest writer and ops HTTP in one event loop.

``SekimoriServer(settings)`` is the app factory: no module-level engines or settings,
so tests can run as many isolated servers as they like.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn
from websockets.asyncio.server import serve

from sekimori.server.alerting.jobs import AlertJobs
from sekimori.server.blobs import blob_store_for
from sekimori.server.bootstrap import InitResult, initialize
from sekimori.server.channel import AgentChannel
from sekimori.server.console.app import console_uses_tls, create_console_app
from sekimori.server.ingest import IngestWriter
from sekimori.server.metrics import Metrics
from sekimori.server.vuln.job import VulnJob
from sekimori.settings import Settings

__all__ = ["SekimoriServer"]

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the server process owns shutdown."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class SekimoriServer:
    def __init__(self, settings: Settings, init: InitResult | None = None) -> None:
        self.settings = settings
        self.init = init or initialize(settings)
        self.engine = self.init.engine
        self.pki = self.init.pki
        self.metrics = Metrics()
        blobs = blob_store_for(settings.data_path)
        self.writer = IngestWriter(
            self.engine,
            self.metrics,
            commit_events=settings.server.ingest_commit_events,
            blobs=blobs,
        )
        self.channel = AgentChannel(
            settings.server, self.engine, self.pki, self.writer, self.metrics, blobs=blobs
        )
        # Notifications, state rules, retention purge (issue 5).
        self.alert_jobs = AlertJobs(self.engine, settings)
        # Vulnerability findings kept current from inventory and feeds (issue 8).
        self.vuln_job = VulnJob(
            self.engine,
            owner=self.alert_jobs.notifier.owner,
            interval_seconds=settings.server.vuln.match_seconds,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down cleanly."""
        cfg = self.settings.server
        self.writer.start()
        tls = console_uses_tls(cfg)
        ops = _EmbeddedUvicorn(
            uvicorn.Config(
                create_console_app(
                    self.settings,
                    self.engine,
                    self.metrics,
                    pki=self.pki,
                    connected=lambda: self.channel.connected_devices,
                    live_sessions=self.channel.live,
                ),
                host=cfg.console_host,
                port=cfg.console_port,
                log_config=None,
                lifespan="off",
                access_log=False,
                # Off loopback the console speaks HTTPS with the server certificate
                # (the one agents pin through the deployment CA).
                ssl_certfile=str(self.pki.server_cert_path) if tls else None,
                ssl_keyfile=str(self.pki.server_key_path) if tls else None,
            )
        )
        tasks: list[asyncio.Task[None]] = []
        jobs_stop = asyncio.Event()
        jobs = [asyncio.create_task(job) for job in self.alert_jobs.tasks(jobs_stop)]
        jobs.append(asyncio.create_task(self.vuln_job.run(jobs_stop)))
        try:
            async with serve(
                self.channel.handle,
                cfg.agent_host,
                cfg.agent_port,
                ssl=self.pki.server_ssl_context(),
                process_request=self.channel.process_request,
                max_size=cfg.max_frame_bytes,
                # Keepalive pings find dead peers (a PC unplugged mid-session).
                ping_interval=max(cfg.heartbeat_seconds, 5.0),
                ping_timeout=max(cfg.heartbeat_seconds, 5.0) * 2,
                compression=None,  # batches are compressed already
                server_header=None,
            ):
                tasks = [
                    asyncio.create_task(self.channel.watch_revocations()),
                    asyncio.create_task(self.channel.flush_presence()),
                    asyncio.create_task(self.channel.watch_policies()),
                    asyncio.create_task(self.channel.actions.run()),
                    asyncio.create_task(ops.serve()),
                ]
                log.info(
                    "sekimori server: agents on wss://%s:%d, console on %s://%s:%d",
                    cfg.agent_host,
                    cfg.agent_port,
                    "https" if tls else "http",
                    cfg.console_host,
                    cfg.console_port,
                )
                await stop.wait()
                log.info("shutting down")
                ops.should_exit = True
        finally:
            for task in tasks[:-1]:  # all but the console, which stops by itself
                task.cancel()
            if tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*tasks, return_exceptions=True)
            # The jobs finish the send or purge chunk they are in (bounded by the
            # transports' timeouts), then stop; past that they are cancelled.
            jobs_stop.set()
            _, late = await asyncio.wait(jobs, timeout=30)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            await asyncio.to_thread(self.writer.stop)
            self.engine.dispose()
