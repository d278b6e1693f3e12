"""events: index by OS user and time for the log search; drop (device, kind, time)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 00:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_user_time", ["os_user", "time_us"], unique=False)
        # Each index costs every insert; a device's newest inventory is found well
        # enough through (device_id, time_us) (its events since the last daily one).
        batch_op.drop_index("ix_events_device_kind_time")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_user_time")
        batch_op.create_index(
            "ix_events_device_kind_time", ["device_id", "kind", "time_us"], unique=False
        )
