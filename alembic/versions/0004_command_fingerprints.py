"""fingerprints of applied commands

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # What the command said: a key seen before with another command is not a duplicate
    # (Telegram, or a restarted sandbox, may number updates from the start again).
    with op.batch_alter_table("processed_commands") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_commands") as batch:
        batch.drop_column("fingerprint")
