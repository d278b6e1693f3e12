"""policies (versioned per group) and device_policy (the version each device applied)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name=op.f("fk_policies_group_id_groups")
        ),
        sa.PrimaryKeyConstraint("group_id", "version", name=op.f("pk_policies")),
    )
    op.create_table(
        "device_policy",
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reported_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_policy")),
    )


def downgrade() -> None:
    op.drop_table("device_policy")
    op.drop_table("policies")
