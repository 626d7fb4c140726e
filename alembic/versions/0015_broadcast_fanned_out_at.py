"""broadcasts.fanned_out_at: the fan-out runs in a notifications task after Confirm

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 11:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("fanned_out_at", sa.DateTime(timezone=True), nullable=True))
    # Broadcasts confirmed before this revision were fanned out by the Confirm itself.
    op.execute("UPDATE broadcasts SET fanned_out_at = created_at WHERE state <> 'draft'")


def downgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_column("fanned_out_at")
