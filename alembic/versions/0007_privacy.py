"""privacy: erasure audit's reason and mode, outbox rows' actor, index of outbox by request

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 17:41:32
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("erasure_audit") as batch_op:
        batch_op.add_column(
            sa.Column("reason", sa.String(length=16), nullable=False, server_default="self")
        )
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), nullable=False, server_default="anonymize")
        )
        batch_op.create_check_constraint("reason", "reason IN ('self', 'admin')")
        batch_op.create_check_constraint("mode", "mode IN ('anonymize', 'delete')")
        batch_op.create_index(batch_op.f("ix_erasure_audit_erased_at"), ["erased_at"])

    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("actor_id", BigId, nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_actor_id"), ["actor_id"])
        batch_op.create_index(batch_op.f("ix_outbox_request_id"), ["request_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_actor_id_users"), "users", ["actor_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_outbox_actor_id_users"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_outbox_request_id"))
        batch_op.drop_index(batch_op.f("ix_outbox_actor_id"))
        batch_op.drop_column("actor_id")

    with op.batch_alter_table("erasure_audit") as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_audit_erased_at"))
        batch_op.drop_constraint(batch_op.f("ck_erasure_audit_mode"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_erasure_audit_reason"), type_="check")
        batch_op.drop_column("mode")
        batch_op.drop_column("reason")
