"""User queries shared by tasks."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.commands import Actor
from core.roles import Role
from core.texts import pick_language
from db.models import User


def upsert_user(session: Session, actor: Actor, admin_ids: frozenset[int]) -> User:
    """Create or refresh the profile atomically (two first messages at once make one row).

    ADMIN_IDS promotes, never demotes: an admin granted by another admin stays one.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    profile = {
        "username": actor.username,
        "first_name": actor.first_name,
        "last_name": actor.last_name,
        "language": pick_language(actor.language),
        "reachable": True,
    }
    values = {"telegram_id": actor.user_id, "role": Role.RESIDENT.value, **profile}
    if actor.user_id in admin_ids:
        values["role"] = profile["role"] = Role.ADMIN.value
    stmt = insert(User).values(values)
    stmt = stmt.on_conflict_do_update(index_elements=[User.telegram_id], set_=profile)
    session.execute(stmt)
    user = session.scalars(
        select(User)
        .where(User.telegram_id == actor.user_id)
        .execution_options(populate_existing=True)
    ).one()
    return user
