"""role changes: who granted or revoked which role, and when

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "role_changes",
        sa.Column("id", BigId, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("changed_by", BigId, nullable=True),
        sa.Column("from_role", sa.String(length=16), nullable=False),
        sa.Column("to_role", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_role_changes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["changed_by"],
            ["users.id"],
            name=op.f("fk_role_changes_changed_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_changes")),
    )
    op.create_index(op.f("ix_role_changes_user_id"), "role_changes", ["user_id"])
    op.create_index(op.f("ix_role_changes_created_at"), "role_changes", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_role_changes_created_at"), table_name="role_changes")
    op.drop_index(op.f("ix_role_changes_user_id"), table_name="role_changes")
    op.drop_table("role_changes")
