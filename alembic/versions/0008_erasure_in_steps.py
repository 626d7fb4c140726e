"""erasure in steps: the audit row carries an unfinished erasure's work; notes and requests
found by author

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("erasure_audit") as batch_op:
        batch_op.add_column(sa.Column("user_id", BigId, nullable=True))
        batch_op.add_column(sa.Column("finished_at", Timestamp, nullable=True))
        batch_op.add_column(sa.Column("progress_at", Timestamp, nullable=True))
        batch_op.add_column(sa.Column("pending", Json, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_erasure_audit_user_id_users"),
            "users",
            ["user_id"],
            ["id"],
            ondelete="SET NULL",
        )
    # Erasures before this one finished in their single transaction.
    op.execute("UPDATE erasure_audit SET finished_at = erased_at WHERE finished_at IS NULL")
    # An erasure clears the notes a user wrote: few of their events have one (bench/privacy.py:
    # 502 of 66,260), and the full actor index made it read them all.
    op.create_index(
        "ix_request_events_actor_id_noted",
        "request_events",
        ["actor_id"],
        postgresql_where=sa.text("note IS NOT NULL"),
        sqlite_where=sa.text("note IS NOT NULL"),
    )
    # A user's requests in id order (an erasure's steps walk them by id: on author_id alone
    # PostgreSQL walked the primary key, filtering 1M rows for 10,000).
    op.drop_index("ix_requests_author_id", table_name="requests")
    op.create_index("ix_requests_author_id", "requests", ["author_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_requests_author_id", table_name="requests")
    op.create_index("ix_requests_author_id", "requests", ["author_id"])
    op.drop_index("ix_request_events_actor_id_noted", table_name="request_events")
    with op.batch_alter_table("erasure_audit") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_erasure_audit_user_id_users"), type_="foreignkey")
        batch_op.drop_column("pending")
        batch_op.drop_column("progress_at")
        batch_op.drop_column("finished_at")
        batch_op.drop_column("user_id")
