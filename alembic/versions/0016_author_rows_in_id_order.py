"""a user's comments and history events in id order: (author_id, id) and (actor_id, id)

An export streams the comments and history entries a user wrote on other people's requests in
id order through a server-side cursor, which PostgreSQL plans for the first rows: with an
index on the author (or actor) alone it walked the whole primary key of the table, filtering
(4.2M events for 66,000; bench/privacy.py). With the id in the index the rows come in order
from the user's range of it. The same index serves every lookup by author or actor.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_comments_author_id", table_name="comments")
    op.create_index("ix_comments_author_id", "comments", ["author_id", "id"])
    op.drop_index("ix_request_events_actor_id", table_name="request_events")
    op.create_index("ix_request_events_actor_id", "request_events", ["actor_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_request_events_actor_id", table_name="request_events")
    op.create_index("ix_request_events_actor_id", "request_events", ["actor_id"])
    op.drop_index("ix_comments_author_id", table_name="comments")
    op.create_index("ix_comments_author_id", "comments", ["author_id"])
