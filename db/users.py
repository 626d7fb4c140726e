"""User queries shared by tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.clock import as_utc
from core.commands import Actor
from core.roles import Role
from core.texts import pick_language
from db.models import ErasureAudit, User


class StaleCommand(Exception):
    """A command issued before its user was erased and applied after: applying it would bring
    something of them back, so it is dropped (see `upsert_user`)."""


def upsert_user(
    session: Session,
    actor: Actor,
    admin_ids: frozenset[int],
    issued_at: datetime | None = None,
) -> User:
    """Create or refresh the profile from what Telegram sent with this command.

    Runs on every command, so it writes only what changed. Two first messages at once make one
    row (insert on conflict). ADMIN_IDS promotes, never demotes: an admin granted by another
    admin stays one. A username taken from someone else is released by its old holder.

    The profile is read FOR KEY SHARE: an erasure (which takes the row FOR UPDATE) waits for
    this command to commit, and erases what it wrote; a command that waited for an erasure
    finds no profile, and one made now is younger than the command. Such a command, `issued_at`
    before an erasure, raises StaleCommand: no identifier of the erased user is kept to tell
    whose erasure it was, so a brand-new user's command issued before someone's erasure and
    applied after it (a window of the queue's latency) is dropped too.
    """
    profile: dict[str, Any] = {
        "username": actor.username,
        "first_name": actor.first_name,
        "last_name": actor.last_name,
        "language": pick_language(actor.language),
        "reachable": True,
    }
    if actor.user_id in admin_ids:
        profile["role"] = Role.ADMIN.value
    user = session.scalars(
        select(User)
        .where(User.telegram_id == actor.user_id)
        .with_for_update(read=True, key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if user is not None:
        _refuse_stale(session, issued_at, as_utc(user.created_at))
    if user is not None and all(getattr(user, k) == v for k, v in profile.items()):
        return user
    if actor.username and (user is None or not _same(user.username, actor.username)):
        _release_username(session, actor.username, actor.user_id)
    if user is not None:
        for key, value in profile.items():
            setattr(user, key, value)  # the ORM updates only the columns that differ
        session.flush()
        return user
    _refuse_stale(session, issued_at, None)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {"telegram_id": actor.user_id, "role": Role.RESIDENT.value, **profile}
    stmt = insert(User).values(values)
    session.execute(stmt.on_conflict_do_update(index_elements=[User.telegram_id], set_=profile))
    return session.scalars(
        select(User)
        .where(User.telegram_id == actor.user_id)
        .execution_options(populate_existing=True)
    ).one()


def _refuse_stale(session: Session, issued_at: datetime | None, born: datetime | None) -> None:
    """StaleCommand when an erasure ran after the command was issued and the profile it would
    act on (`born`; None: about to be made) is younger than the command."""
    if issued_at is None:
        return
    issued = as_utc(issued_at)
    if born is not None and born < issued:
        return  # the profile the user had when they issued it: not erased since
    latest = session.scalar(select(func.max(ErasureAudit.erased_at)))
    if latest is not None and as_utc(latest) > issued:
        raise StaleCommand


def _same(stored: str | None, sent: str) -> bool:
    # Telegram usernames are case-insensitive: @Ann and @ann are one name.
    return stored is not None and stored.lower() == sent.lower()


def _release_username(session: Session, username: str, telegram_id: int) -> None:
    """Whoever else still holds `username` renamed since: Telegram moved it to `telegram_id`.
    Without this, /grant @name could pick the old holder."""
    session.execute(
        update(User)
        .where(
            func.lower(User.username) == username.lower(),
            User.telegram_id.is_distinct_from(telegram_id),
        )
        .values(username=None)
        .execution_options(synchronize_session="fetch")
    )
