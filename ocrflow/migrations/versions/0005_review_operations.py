"""Review as an operation: priority, due time, assignment, the events sent for an item; reviewer groups.

Revision ID: 0005
Revises: 0003 (reliability's 0004 goes between when it lands: whoever lands second re-points)
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("assigned_to", sa.String(128)))
        batch.add_column(sa.Column("requested_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("overdue_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("extracted_confidence", sa.JSON()))
        batch.create_index("ix_review_items_queue_order", ["state", "priority", "due_at"])
    with op.batch_alter_table("reviewers") as batch:
        batch.add_column(sa.Column("groups", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("reviewers") as batch:
        batch.drop_column("groups")
    with op.batch_alter_table("review_items") as batch:
        batch.drop_index("ix_review_items_queue_order")
        for column in (
            "extracted_confidence",
            "overdue_at",
            "requested_at",
            "assigned_to",
            "due_at",
            "priority",
        ):
            batch.drop_column(column)
