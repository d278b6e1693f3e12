"""Prometheus metrics of one server instance (its own registry: no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.agents_connected = Gauge(
            "sekimori_agents_connected", "Agents connected to this server", registry=self.registry
        )
        self.events_ingested = Counter(
            "sekimori_events_ingested", "Events committed to the store", registry=self.registry
        )
        self.events_duplicate = Counter(
            "sekimori_events_duplicate",
            "Events received again and not stored twice",
            registry=self.registry,
        )
        self.events_quarantined = Counter(
            "sekimori_events_quarantined",
            "Events that failed validation and were quarantined",
            registry=self.registry,
        )
        self.batch_latency = Histogram(
            "sekimori_batch_commit_seconds",
            "Time from receiving a batch to its commit",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.ingest_queue_events = Gauge(
            "sekimori_ingest_queue_events",
            "Events received and waiting for the ingest writer",
            registry=self.registry,
        )
        self.agent_outbox_events = Gauge(
            "sekimori_agent_outbox_events",
            "Events waiting in connected agents' outboxes (from their heartbeats)",
            registry=self.registry,
        )
        self.protocol_errors = Counter(
            "sekimori_protocol_errors",
            "Frames refused, by error code",
            ["code"],
            registry=self.registry,
        )
        self.enrollments = Counter(
            "sekimori_enrollments",
            "Enrollment attempts, by result",
            ["result"],
            registry=self.registry,
        )
        self.alerts_raised = Counter(
            "sekimori_alerts_raised",
            "Alerts opened by the rules at ingest (growing an open alert does not count)",
            registry=self.registry,
        )
