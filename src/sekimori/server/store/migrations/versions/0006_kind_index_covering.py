"""events: the (kind, time) index also carries os_user and device_id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 00:55:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_kind_time")
        batch_op.create_index(
            "ix_events_kind_time", ["kind", "time_us", "os_user", "device_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_kind_time")
        batch_op.create_index("ix_events_kind_time", ["kind", "time_us"], unique=False)
