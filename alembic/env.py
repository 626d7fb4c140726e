"""Alembic environment: the URL comes from the caller (db.migrate) or the settings."""

from __future__ import annotations

import warnings

from sqlalchemy import pool
from sqlalchemy.exc import SAWarning

from alembic import context
from core.settings import get_settings
from db.models import Base
from db.session import make_engine

# SQLite batch mode reflects the tables a rebuilt one refers to; users' unique index on
# lower(username) is an expression it cannot reflect, and no batch rebuilds users itself.
warnings.filterwarnings(
    "ignore", "Skipped unsupported reflection of expression-based index", SAWarning
)

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().db_url


def run_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url, poolclass=pool.NullPool)  # migrations keep no connections
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
