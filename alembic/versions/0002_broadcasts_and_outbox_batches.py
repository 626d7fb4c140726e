"""broadcasts and outbox batches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:15:07.049447
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("author_id", BigId, nullable=True),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("progress_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("progress_message_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_broadcasts_author_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    # Batch mode: SQLite cannot add foreign keys with ALTER TABLE; it rebuilds the table.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("batch_id", BigId, nullable=True))
        batch.add_column(sa.Column("request_id", BigId, nullable=True))
        batch.create_index(batch.f("ix_outbox_batch_id_state"), ["batch_id", "state"])
        batch.create_foreign_key(
            batch.f("fk_outbox_request_id_requests"), "requests", ["request_id"], ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            batch.f("fk_outbox_batch_id_broadcasts"), "broadcasts", ["batch_id"], ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint(batch.f("fk_outbox_batch_id_broadcasts"), type_="foreignkey")
        batch.drop_constraint(batch.f("fk_outbox_request_id_requests"), type_="foreignkey")
        batch.drop_index(batch.f("ix_outbox_batch_id_state"))
        batch.drop_column("request_id")
        batch.drop_column("batch_id")
    op.drop_table("broadcasts")
