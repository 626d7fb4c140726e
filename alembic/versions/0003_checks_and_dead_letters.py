"""CHECK constraints on vocabularies and ratings; dead-lettered commands

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")

# (table, constraint name, condition): the same as in db/models.py.
CHECKS = [
    ("users", "role", "role IN ('resident', 'staff', 'admin')"),
    (
        "requests",
        "status",
        "status IN ('new', 'accepted', 'in_progress', 'done', 'rejected', 'cancelled', 'reopened')",
    ),
    ("requests", "priority", "priority IN ('low', 'normal', 'high', 'urgent')"),
    ("requests", "rating", "rating IS NULL OR rating BETWEEN 1 AND 5"),
    ("requests", "version", "version >= 1"),
    ("attachments", "kind", "kind IN ('photo', 'document')"),
    ("outbox", "state", "state IN ('pending', 'sending', 'sent', 'failed', 'dead', 'cancelled')"),
    ("outbox", "attempts", "attempts >= 0"),
    ("broadcasts", "state", "state IN ('draft', 'sending', 'done', 'cancelled')"),
    ("broadcasts", "audience", "audience IN ('residents', 'staff', 'everyone')"),
]


def _tables() -> list[str]:
    return list(dict.fromkeys(table for table, _, _ in CHECKS))


def upgrade() -> None:
    # One batch per table: SQLite rebuilds the table once, whatever the number of checks.
    for table in _tables():
        with op.batch_alter_table(table) as batch:
            for name, condition in ((n, c) for t, n, c in CHECKS if t == table):
                batch.create_check_constraint(name, condition)
    # A username belongs to one user at a time (Telegram compares them case-insensitively):
    # keep the most recently updated holder of a duplicated name, then make it unique.
    op.execute(
        "UPDATE users SET username = NULL WHERE id IN ("
        " SELECT id FROM (SELECT id, row_number() OVER ("
        "  PARTITION BY lower(username) ORDER BY updated_at DESC, id DESC) AS n"
        "  FROM users WHERE username IS NOT NULL) AS ranked WHERE n > 1)"
    )
    op.create_index(
        "uq_users_lower_username", "users", [sa.text("lower(username)")], unique=True
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, nullable=False),
        sa.Column("task_name", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("command", Json, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(op.f("ix_dead_letters_created_at"), "dead_letters", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dead_letters_created_at"), table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index("uq_users_lower_username", table_name="users")
    for table in _tables():
        with op.batch_alter_table(table) as batch:
            for name in (n for t, n, _ in CHECKS if t == table):
                batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
