"""The server's background jobs for alerts and retention, built once per replica:
the notification worker, the state rules and the retention purge.

``AlertJobs(engine, settings).tasks(stop)`` returns the coroutines the server runs
next to the agent channel; each ends when ``stop`` is set. All three are safe on
several replicas (see each module): job leases in the store decide who runs what.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import sqlalchemy as sa

from sekimori.server.alerting.notifier import Notifier, replica_id
from sekimori.server.alerting.retention import RetentionPurge
from sekimori.server.alerting.state_rules import StateRules
from sekimori.server.blobs import blob_store_for
from sekimori.settings import Settings

__all__ = ["AlertJobs"]


class AlertJobs:
    def __init__(self, engine: sa.Engine, settings: Settings) -> None:
        owner = replica_id()
        server = settings.server
        self.notifier = Notifier(engine, server, owner=owner)
        self.state_rules = StateRules(engine, server, owner=owner)
        self.retention = RetentionPurge(
            engine, server, owner=owner, blobs=blob_store_for(settings.data_path)
        )

    def tasks(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        return [
            self.notifier.run(stop),
            self.state_rules.run(stop),
            self.retention.run(stop),
        ]
