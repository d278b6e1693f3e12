"""The jobs in a real server process: a new alert arrives by email from `sekimori
server` configured through the environment, and a PC silent for a day raises its
offline alert, which is mailed too."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.alerting.state_rules import AGENT_OFFLINE
from sekimori.server.store.schema import alerts
from tests.console.seed import add_device
from tests.processes import ServerProcess, wait_for
from tests.server.alerting.conftest import raise_alert
from tests.server.notify.conftest import SmtpServer

HOUR = 3_600_000_000


@pytest.fixture
def notifying_server(
    tmp_path: Path, database_url: str, smtp_server: SmtpServer
) -> Iterator[ServerProcess]:
    overrides = {
        "NOTIFY__TARGETS__MAIL__KIND": "email",
        "NOTIFY__TARGETS__MAIL__HOST": "127.0.0.1",
        "NOTIFY__TARGETS__MAIL__PORT": str(smtp_server.port),
        "NOTIFY__TARGETS__MAIL__SECURITY": "none",
        "NOTIFY__TARGETS__MAIL__SENDER": "sekimori@example.test",
        "NOTIFY__TARGETS__MAIL__RECIPIENTS": json.dumps(["soc@example.test"]),
        "NOTIFY__ROUTES": json.dumps([{"targets": ["mail"]}]),
        "NOTIFY__POLL_SECONDS": "0.2",
        "STATE_RULES_SECONDS": "1",
    }
    proc = ServerProcess(tmp_path / "server", database_url, **overrides).start()
    try:
        yield proc
    finally:
        proc.dispose()


def _subjects(smtp: SmtpServer) -> list[str]:
    out = []
    for envelope in list(smtp.mailbox.envelopes):
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        out.append(str(mail["Subject"]).strip())
    return out


def test_alerts_are_mailed_by_the_running_server(
    notifying_server: ServerProcess, smtp_server: SmtpServer
) -> None:
    engine = notifying_server.engine()
    raise_alert(engine, hostname="pc-usb", now_us=now_us())
    wait_for(lambda: len(smtp_server.mailbox.envelopes) >= 1, 20, "the alert's mail")
    assert _subjects(smtp_server) == ["[Sekimori] High: File copied to removable media on pc-usb"]
    # A PC silent for a day: the next run of the state rules raises it.
    add_device(engine, "pc-silent", last_seen_us=now_us() - 25 * HOUR)

    def offline_alerts() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(alerts)
                    .where(alerts.c.rule_id == AGENT_OFFLINE.id)
                ).scalar_one()
            )

    wait_for(lambda: offline_alerts() == 1, 20, "the offline alert", 0.2)
    wait_for(lambda: len(smtp_server.mailbox.envelopes) >= 2, 20, "the offline alert's mail")
    assert _subjects(smtp_server)[1] == "[Sekimori] Medium: Agent offline on pc-silent"
    # Raised once, not again by the runs that follow (one a second).
    time.sleep(2.5)
    assert notifying_server.stop() == 0
    assert offline_alerts() == 1
    assert len(smtp_server.mailbox.envelopes) == 2
