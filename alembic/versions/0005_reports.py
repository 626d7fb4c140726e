"""reports: generated files, indexes for period queries

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Files the workers make (report charts and CSVs, exports), until Telegram has them.
    op.create_table(
        "generated_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("telegram_file_id", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generated_files")),
        sa.UniqueConstraint("key", name=op.f("uq_generated_files_key")),
    )
    op.create_index(
        op.f("ix_generated_files_created_at"), "generated_files", ["created_at"], unique=False
    )
    # Reports select requests and events by period (bench/reports.py: 1M requests).
    op.create_index(op.f("ix_requests_created_at"), "requests", ["created_at"], unique=False)
    op.create_index(op.f("ix_requests_accepted_at"), "requests", ["accepted_at"], unique=False)
    op.create_index(op.f("ix_requests_done_at"), "requests", ["done_at"], unique=False)
    op.create_index(
        op.f("ix_request_events_created_at_action"),
        "request_events",
        ["created_at", "action"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_request_events_created_at_action"), table_name="request_events")
    op.drop_index(op.f("ix_requests_done_at"), table_name="requests")
    op.drop_index(op.f("ix_requests_accepted_at"), table_name="requests")
    op.drop_index(op.f("ix_requests_created_at"), table_name="requests")
    op.drop_index(op.f("ix_generated_files_created_at"), table_name="generated_files")
    op.drop_table("generated_files")
