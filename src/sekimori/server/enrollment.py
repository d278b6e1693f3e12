"""Enrollment: turning a one-time token and a public key into a device identity."""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol import Enroll, Enrolled
from sekimori.protocol.signing import encode_signed_keyring
from sekimori.server.actions.keyrings import current_keyring
from sekimori.server.pki import PKI, EnrollmentRefused
from sekimori.server.store.schema import devices
from sekimori.server.store.tokens import TokenRefused, consume_token

__all__ = ["check_host_fields", "enroll_device"]

log = logging.getLogger(__name__)


def _check_text(name: str, value: str, limit: int) -> str:
    if not value or len(value) > limit or any(ord(c) < 32 for c in value):
        raise EnrollmentRefused(f"{name} must be 1-{limit} printable characters")
    return value


def check_host_fields(hostname: str, os: str, os_version: str, agent_version: str) -> None:
    """What an agent says about its host is stored and logged: printable text only."""
    _check_text("hostname", hostname, 255)
    _check_text("os", os, 64)
    _check_text("os_version", os_version, 255)
    _check_text("agent_version", agent_version, 64)


def enroll_device(engine: sa.Engine, pki: PKI, request: Enroll) -> Enrolled:
    """Consume the token, register the device and issue its certificate.

    Raises EnrollmentRefused or TokenRefused with a message safe for the agent.
    Runs in a worker thread (signing and the transaction block).
    """
    check_host_fields(request.hostname, request.os, request.os_version, request.agent_version)
    if len(request.token) > 256:
        raise TokenRefused("unknown enrollment token")
    device_id = str(uuid.uuid4())
    # Read before the token is consumed: a failure here must not leave a device
    # enrolled whose agent never got its certificate.
    keyring = current_keyring(engine)
    operators = encode_signed_keyring(keyring[2]) if keyring is not None else b""
    with engine.begin() as conn:
        group_id = consume_token(
            conn, request.token, device_id=device_id, expected_group=request.group
        )
        # Signed only once the token is accepted: an unauthenticated peer cannot make
        # the server spend signatures. A refused CSR rolls the token back.
        certificate, serial = pki.sign_device_csr(request.csr_pem, device_id)
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
    # ``operators``: the current keyring. The agent pins it only if its fingerprint
    # is the one its administrator gave (``--operators``): the server cannot choose it.
    return Enrolled(device_id=device_id, certificate_pem=certificate, operators=operators)
