"""areas: places grouped (by building, entrance) and the staff subscribed to each

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "areas",
        sa.Column("id", BigId, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("places", Json, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_areas")),
    )
    op.create_index("uq_areas_lower_name", "areas", [sa.text("lower(name)")], unique=True)
    op.create_table(
        "area_staff",
        sa.Column("area_id", BigId, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["area_id"], ["areas.id"], name=op.f("fk_area_staff_area_id_areas"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_area_staff_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("area_id", "user_id", name=op.f("pk_area_staff")),
    )
    op.create_index(op.f("ix_area_staff_user_id"), "area_staff", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_area_staff_user_id"), table_name="area_staff")
    op.drop_table("area_staff")
    op.drop_index("uq_areas_lower_name", table_name="areas")
    op.drop_table("areas")
