"""Areas and their staff: who a new request in a place notifies."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.domain import in_area
from db.models import Area, AreaStaff, User
from db.requests import is_staff, staff_members


def all_areas(session: Session) -> Sequence[Area]:
    return session.scalars(select(Area).order_by(func.lower(Area.name))).all()


def area_named(session: Session, name: str) -> Area | None:
    return session.scalars(select(Area).where(func.lower(Area.name) == name.lower())).one_or_none()


def subscribers(session: Session) -> dict[int, int]:
    """Staff subscribed, per area id (staff and admins with an identity only)."""
    rows = session.execute(
        select(AreaStaff.area_id, func.count())
        .join(User, User.id == AreaStaff.user_id)
        .where(is_staff())
        .group_by(AreaStaff.area_id)
    )
    return {area_id: count for area_id, count in rows}


def subscriptions(session: Session, user_id: int) -> set[int]:
    return set(session.scalars(select(AreaStaff.area_id).where(AreaStaff.user_id == user_id)))


def unsubscribe_all(session: Session, user_id: int) -> None:
    session.execute(delete(AreaStaff).where(AreaStaff.user_id == user_id))


def staff_for_place(session: Session, location: str) -> Sequence[User]:
    """The staff of the areas covering `location`; every staff member when no area covers it
    or nobody covers those areas (a request must always reach somebody)."""
    covering = [a.id for a in all_areas(session) if in_area(location, a.places)]
    if covering:
        covered = session.scalars(
            select(User)
            .where(
                is_staff(),
                # Subscribers who blocked the bot would leave the request with nobody.
                User.reachable.is_(True),
                User.id.in_(select(AreaStaff.user_id).where(AreaStaff.area_id.in_(covering))),
            )
            .order_by(User.id)
        ).all()
        if covered:
            return covered
    return staff_members(session)
