"""screens: screen_frames (one row per stored screenshot; the picture is a blob)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 03:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "screen_frames",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("monitor", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("application", sa.String(length=255), nullable=True),
        sa.Column("os_user", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("device_id", "seq", name=op.f("pk_screen_frames")),
    )
    with op.batch_alter_table("screen_frames", schema=None) as batch_op:
        batch_op.create_index(
            "ix_screen_frames_device_time", ["device_id", "time_us"], unique=False
        )
        batch_op.create_index("ix_screen_frames_sha256", ["sha256"], unique=False)
        batch_op.create_index("ix_screen_frames_user_time", ["os_user", "time_us"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("screen_frames", schema=None) as batch_op:
        batch_op.drop_index("ix_screen_frames_user_time")
        batch_op.drop_index("ix_screen_frames_sha256")
        batch_op.drop_index("ix_screen_frames_device_time")
    op.drop_table("screen_frames")
