"""Queries of the request desk shared by several tasks."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from core.domain import OPEN_STATUSES, Priority, Status
from core.roles import Role
from db.models import Comment, Request, RequestEvent, User

_PRIORITY_RANK = case({p.value: p.rank for p in Priority}, value=Request.priority, else_=0)


def user_by_telegram_id(session: Session, telegram_id: int) -> User | None:
    return session.scalars(select(User).where(User.telegram_id == telegram_id)).one_or_none()


def find_user(session: Session, target: str) -> User | None:
    """A Telegram id, or an @username (case-insensitive, as Telegram treats them)."""
    target = target.strip()
    if target.lstrip("-").isdigit():
        return user_by_telegram_id(session, int(target))
    name = target.removeprefix("@").lower()
    return session.scalars(
        select(User).where(func.lower(User.username) == name, User.telegram_id.is_not(None))
    ).first()


def staff_members(session: Session) -> Sequence[User]:
    return session.scalars(
        select(User)
        .where(User.role.in_([Role.STAFF.value, Role.ADMIN.value]), User.telegram_id.is_not(None))
        .order_by(User.id)
    ).all()


def lock_request(session: Session, request_id: int) -> Request | None:
    """The request row, locked for this transaction: concurrent actions on it take turns."""
    return session.scalars(
        select(Request).where(Request.id == request_id).with_for_update()
    ).one_or_none()


def page_of(
    session: Session, query: Select[Request], offset: int, limit: int
) -> tuple[Sequence[Request], int]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    return session.scalars(query.offset(offset).limit(limit)).all(), total or 0


def my_requests(
    session: Session, author_id: int, offset: int, limit: int
) -> tuple[Sequence[Request], int]:
    query = select(Request).where(Request.author_id == author_id).order_by(Request.id.desc())
    return page_of(session, query, offset, limit)


def open_queue(
    session: Session, status: Status | None, location: str | None, offset: int, limit: int
) -> tuple[Sequence[Request], int]:
    """Open requests, most urgent first, then oldest first."""
    statuses = [status.value] if status else [s.value for s in OPEN_STATUSES]
    query = select(Request).where(Request.status.in_(statuses))
    if location:
        pattern = "%" + location.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(Request.location.ilike(pattern, escape="\\"))
    query = query.order_by(_PRIORITY_RANK.desc(), Request.created_at, Request.id)
    return page_of(session, query, offset, limit)


def open_counts(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(Request.assignee_id, func.count())
        .where(
            Request.assignee_id.is_not(None),
            Request.status.in_([s.value for s in OPEN_STATUSES]),
        )
        .group_by(Request.assignee_id)
    ).all()
    return {assignee: count for assignee, count in rows if assignee is not None}


def comments_of(session: Session, request_id: int) -> Sequence[Comment]:
    return session.scalars(
        select(Comment).where(Comment.request_id == request_id).order_by(Comment.id)
    ).all()


def events_of(session: Session, request_id: int) -> Sequence[RequestEvent]:
    return session.scalars(
        select(RequestEvent).where(RequestEvent.request_id == request_id).order_by(RequestEvent.id)
    ).all()


def users_by_id(session: Session, ids: set[int | None]) -> dict[int, User]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(wanted)))}
