"""outbox (batch_id, state, id): a broadcast's drain takes its next row by the index alone

A drain claims `WHERE batch_id = :id AND state = 'pending' ... ORDER BY id LIMIT 1`. Right
after a fan-out of 10,000 rows the table's statistics still describe the outbox before it, and
with the (batch_id, state) index PostgreSQL joined and sorted every pending row of the
broadcast for each message sent (35-72 ms, ~50,000 buffers; bench/isolation.py). With `id` in
the index the rows come in claim order whatever the statistics say (0.09 ms).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.create_index(batch.f("ix_outbox_batch_id_state_id"), ["batch_id", "state", "id"])
        batch.drop_index(batch.f("ix_outbox_batch_id_state"))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.create_index(batch.f("ix_outbox_batch_id_state"), ["batch_id", "state"])
        batch.drop_index(batch.f("ix_outbox_batch_id_state_id"))
