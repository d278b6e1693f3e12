"""The device registry: who is enrolled, where they stand, whether they are online."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.server.store.schema import devices, groups

__all__ = [
    "DEVICE_COLUMNS",
    "Device",
    "DeviceNotFound",
    "device_from_row",
    "get_device",
    "list_devices",
    "mark_connected",
    "mark_disconnected",
    "resolve_device_id",
    "revoke_device",
    "revoked_among",
    "revoked_since",
    "touch_devices",
]


class DeviceNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    hostname: str
    os: str
    os_version: str
    agent_version: str
    group: str
    cert_serial: str
    enrolled_us: int
    first_seen_us: int | None
    last_seen_us: int | None
    connected: bool
    revoked_us: int | None
    acked_seq: int
    outbox_events: int
    dropped_total: int

    def online(self, now: int, heartbeat_seconds: float) -> bool:
        """Connected, and heard from within three heartbeats (a crashed server
        cannot leave a device looking online for long)."""
        if not self.connected or self.revoked_us is not None or self.last_seen_us is None:
            return False
        return now - self.last_seen_us <= int(3 * heartbeat_seconds * 1_000_000) + 5_000_000


# The columns a Device is built from (device_queries.py selects them with its own joins).
DEVICE_COLUMNS = (
    devices.c.id,
    devices.c.hostname,
    devices.c.os,
    devices.c.os_version,
    devices.c.agent_version,
    groups.c.name.label("group"),
    devices.c.cert_serial,
    devices.c.enrolled_us,
    devices.c.first_seen_us,
    devices.c.last_seen_us,
    devices.c.connected,
    devices.c.revoked_us,
    devices.c.acked_seq,
    devices.c.outbox_events,
    devices.c.dropped_total,
)


def _select() -> sa.Select[tuple[object, ...]]:
    return sa.select(*DEVICE_COLUMNS).join(groups, groups.c.id == devices.c.group_id)


def device_from_row(row: sa.Row[tuple[object, ...]]) -> Device:
    return Device(**row._asdict())


def get_device(conn: sa.Connection, device_id: str) -> Device | None:
    row = conn.execute(_select().where(devices.c.id == device_id)).first()
    return device_from_row(row) if row else None


def list_devices(engine: sa.Engine) -> list[Device]:
    with engine.connect() as conn:
        rows = conn.execute(_select().order_by(devices.c.hostname, devices.c.id)).all()
    return [device_from_row(r) for r in rows]


def resolve_device_id(engine: sa.Engine, text: str) -> str:
    """A full device id, or a unique prefix of at least 6 characters."""
    text = text.strip().lower()
    with engine.connect() as conn:
        if conn.execute(sa.select(devices.c.id).where(devices.c.id == text)).first():
            return text
        if len(text) >= 6:
            found = (
                conn.execute(
                    sa.select(devices.c.id)
                    .where(devices.c.id.startswith(text, autoescape=True))
                    .limit(2)
                )
                .scalars()
                .all()
            )
            if len(found) == 1:
                return str(found[0])
            if len(found) > 1:
                raise DeviceNotFound(f"device id prefix {text!r} is ambiguous")
    raise DeviceNotFound(f"no device {text!r}")


def revoke_device(engine: sa.Engine, device_id: str) -> bool:
    """Revoke a device; True if it was not revoked before. The server disconnects it
    within ``revocation_poll_seconds`` and refuses it from then on."""
    with engine.begin() as conn:
        return bool(
            conn.execute(
                sa.update(devices)
                .where(devices.c.id == device_id, devices.c.revoked_us.is_(None))
                .values(revoked_us=now_us(), connected=False)
            ).rowcount
        )


def revoked_since(conn: sa.Connection, since_us: int) -> list[tuple[str, int]]:
    rows = conn.execute(
        sa.select(devices.c.id, devices.c.revoked_us).where(devices.c.revoked_us >= since_us)
    ).all()
    return [(str(r[0]), int(r[1])) for r in rows]


def revoked_among(conn: sa.Connection, device_ids: list[str]) -> set[str]:
    """Which of ``device_ids`` are revoked (checked in chunks: IN lists stay short)."""
    found: set[str] = set()
    for start in range(0, len(device_ids), 500):
        chunk = device_ids[start : start + 500]
        found.update(
            str(r)
            for r in conn.execute(
                sa.select(devices.c.id).where(
                    devices.c.id.in_(chunk), devices.c.revoked_us.is_not(None)
                )
            ).scalars()
        )
    return found


def mark_connected(
    conn: sa.Connection,
    device_id: str,
    *,
    hostname: str,
    os: str,
    os_version: str,
    agent_version: str,
) -> None:
    now = now_us()
    conn.execute(
        sa.update(devices)
        .where(devices.c.id == device_id)
        .values(
            connected=True,
            last_seen_us=now,
            first_seen_us=sa.func.coalesce(devices.c.first_seen_us, now),
            hostname=hostname[:255],
            os=os[:64],
            os_version=os_version[:255],
            agent_version=agent_version[:64],
        )
    )


def mark_disconnected(conn: sa.Connection, device_id: str) -> None:
    conn.execute(
        sa.update(devices)
        .where(devices.c.id == device_id)
        .values(connected=False, last_seen_us=now_us())
    )


def touch_devices(conn: sa.Connection, device_ids: Iterable[str]) -> None:
    """Refresh last_seen for devices that are connected (one statement per call)."""
    ids = list(device_ids)
    if ids:
        conn.execute(
            sa.update(devices)
            .where(devices.c.id.in_(ids), devices.c.revoked_us.is_(None))
            .values(last_seen_us=now_us(), connected=True)
        )
