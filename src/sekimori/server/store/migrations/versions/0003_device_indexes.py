"""devices: indexes for the console's sorted, paged list; events by device and kind

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_devices_hostname", "devices", ["hostname", "id"])
    op.create_index("ix_devices_last_seen", "devices", ["last_seen_us", "id"])
    op.create_index("ix_devices_group", "devices", ["group_id", "hostname"])
    op.create_index("ix_events_device_kind_time", "events", ["device_id", "kind", "time_us"])


def downgrade() -> None:
    op.drop_index("ix_events_device_kind_time", table_name="events")
    op.drop_index("ix_devices_group", table_name="devices")
    op.drop_index("ix_devices_last_seen", table_name="devices")
    op.drop_index("ix_devices_hostname", table_name="devices")
