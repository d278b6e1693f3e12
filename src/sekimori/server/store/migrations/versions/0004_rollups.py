"""usage_hourly: per hour, group, kind and key counts maintained at ingest

Revision ID: 0004
Revises: 0003

After upgrading a store that already holds events, fill the rollups once with
``sekimori rollup rebuild`` (docs/operations.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_hourly",
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("hour_us", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("group_id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("kind", "hour_us", "group_id", "key", name="pk_usage_hourly"),
    )
    op.create_index("ix_usage_hourly_hour", "usage_hourly", ["hour_us"])


def downgrade() -> None:
    op.drop_index("ix_usage_hourly_hour", table_name="usage_hourly")
    op.drop_table("usage_hourly")
