"""The server's tables (SQLAlchemy Core). Alembic migrations are generated from this
metadata and ``alembic check`` in the tests catches drift.

All times are integer microseconds since the epoch, UTC (see sekimori.clock).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "devices",
    "enrollment_tokens",
    "events",
    "groups",
    "metadata",
    "quarantine",
    "users",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("os", sa.String(64), nullable=False),
    sa.Column("os_version", sa.String(255), nullable=False),
    sa.Column("agent_version", sa.String(64), nullable=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("cert_serial", sa.String(64), nullable=False),
    sa.Column("enrolled_us", sa.BigInteger, nullable=False),
    sa.Column("first_seen_us", sa.BigInteger, nullable=True),
    sa.Column("last_seen_us", sa.BigInteger, nullable=True),
    sa.Column("connected", sa.Boolean, nullable=False, default=False),
    sa.Column("revoked_us", sa.BigInteger, nullable=True, index=True),
    # Highest sequence number committed for this device: the dedup high-water mark.
    sa.Column("acked_seq", sa.BigInteger, nullable=False, default=0),
    sa.Column("outbox_events", sa.BigInteger, nullable=False, default=0),
    sa.Column("dropped_total", sa.BigInteger, nullable=False, default=0),
)

enrollment_tokens = sa.Table(
    "enrollment_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # SHA-256 of the token: a stolen database does not yield usable tokens.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Column("used_us", sa.BigInteger, nullable=True),
    sa.Column("used_by_device", sa.String(36), nullable=True),
    sa.Column("revoked_us", sa.BigInteger, nullable=True),
    sa.Column("created_by", sa.String(128), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(128), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

# Events: the primary key (device_id, seq) is the deduplication key, so retries and
# replays can never double-count. No foreign key on purpose: it would cost every
# insert a lookup, and device rows are never deleted (revoked devices stay).
events = sa.Table(
    "events",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time_us", sa.BigInteger, nullable=False),
    sa.Column("received_us", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("os_user", sa.String(256), nullable=True),
    # The validated payload as JSON text.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_events_time", "time_us"),
    sa.Index("ix_events_device_time", "device_id", "time_us"),
)

# Events that arrived in a valid batch but failed validation (unknown kind, wrong
# payload types): kept with the reason instead of lost, and not counted as events.
quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("received_us", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
)
