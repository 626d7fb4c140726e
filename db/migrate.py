"""Running Alembic from code: `zavhoz db upgrade`, the tests and the embedded `zavhoz up`."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command

_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(_INI))
    if url:
        # ConfigParser treats % as interpolation; URLs may contain it (escaped passwords).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def check(url: str | None = None) -> None:
    """Raises if the models and the migrations disagree."""
    command.check(alembic_config(url))
