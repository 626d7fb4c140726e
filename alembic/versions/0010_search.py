"""search: full-text indexes for /find (PostgreSQL; SQLite searches with LIKE)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 22:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The very expressions db.requests.search_requests queries with ('simple': no language's
# stemming, the texts are English and Russian alike).
REQUEST_DOCUMENT = "to_tsvector('simple'::regconfig, title || ' ' || description || ' ' || location)"
COMMENT_DOCUMENT = "to_tsvector('simple'::regconfig, text)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE INDEX ix_requests_search ON requests USING gin ({REQUEST_DOCUMENT})")
    op.execute(f"CREATE INDEX ix_comments_search ON comments USING gin ({COMMENT_DOCUMENT})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_comments_search")
    op.execute("DROP INDEX ix_requests_search")
