"""closed: a done request whose reopen window has passed (maintenance.retention closes it)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 02:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('new', 'accepted', 'in_progress', 'done', 'rejected', 'cancelled', 'reopened')"
NEW = (
    "status IN ('new', 'accepted', 'in_progress', 'done', 'rejected', 'cancelled', 'reopened',"
    " 'closed')"
)


def _replace(condition: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        # NOT VALID then VALIDATE: the scan of a big table holds no lock that stops the desk.
        op.execute("ALTER TABLE requests DROP CONSTRAINT ck_requests_status")
        op.execute(f"ALTER TABLE requests ADD CONSTRAINT ck_requests_status CHECK ({condition}) NOT VALID")
        op.execute("ALTER TABLE requests VALIDATE CONSTRAINT ck_requests_status")
    else:
        with op.batch_alter_table("requests") as batch:
            batch.drop_constraint("status", type_="check")  # the convention adds ck_requests_
            batch.create_check_constraint("status", condition)


def upgrade() -> None:
    _replace(NEW)


def downgrade() -> None:
    op.execute("UPDATE requests SET status = 'done' WHERE status = 'closed'")
    _replace(OLD)
