"""Enrollment: turning a one-time token and a public key into a device identity."""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol import Enroll, Enrolled
from sekimori.server.pki import PKI, EnrollmentRefused
from sekimori.server.store.schema import devices
from sekimori.server.store.tokens import TokenRefused, consume_token

__all__ = ["enroll_device"]

log = logging.getLogger(__name__)


def _check_text(name: str, value: str, limit: int) -> str:
    if not value or len(value) > limit or any(ord(c) < 32 for c in value):
        raise EnrollmentRefused(f"{name} must be 1-{limit} printable characters")
    return value


def enroll_device(engine: sa.Engine, pki: PKI, request: Enroll) -> Enrolled:
    """Consume the token, register the device and issue its certificate.

    Raises EnrollmentRefused or TokenRefused with a message safe for the agent.
    Runs in a worker thread (signing and the transaction block).
    """
    _check_text("hostname", request.hostname, 255)
    _check_text("os", request.os, 64)
    _check_text("os_version", request.os_version, 255)
    _check_text("agent_version", request.agent_version, 64)
    if len(request.token) > 256:
        raise TokenRefused("unknown enrollment token")
    device_id = str(uuid.uuid4())
    certificate, serial = pki.sign_device_csr(request.csr_pem, device_id)
    with engine.begin() as conn:
        group_id = consume_token(
            conn, request.token, device_id=device_id, expected_group=request.group
        )
        conn.execute(
            sa.insert(devices).values(
                id=device_id,
                hostname=request.hostname,
                os=request.os,
                os_version=request.os_version,
                agent_version=request.agent_version,
                group_id=group_id,
                cert_serial=serial,
                enrolled_us=now_us(),
                connected=False,
                acked_seq=0,
                outbox_events=0,
                dropped_total=0,
            )
        )
    log.info("enrolled device %s (%s)", device_id, request.hostname)
    return Enrolled(device_id=device_id, certificate_pem=certificate)
