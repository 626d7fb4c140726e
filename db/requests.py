"""Queries of the request desk shared by several tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    and_,
    case,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    union,
)
from sqlalchemy.orm import Session, aliased

from core.clock import as_utc
from core.domain import OPEN_STATUSES, EventAction, Priority, Status
from core.roles import Role
from db.models import Comment, Request, RequestEvent, RoleChange, User

_PRIORITY_RANK = case({p.value: p.rank for p in Priority}, value=Request.priority, else_=0)

# Ids are BIGINT: anything outside 1..2**63-1 names nothing, and must not reach SQL (an
# overflow there is an exception, not an answer).
MAX_ID = 2**63 - 1

T = TypeVar("T")


def valid_id(value: int) -> bool:
    return 0 < value <= MAX_ID


def user_by_telegram_id(session: Session, telegram_id: int) -> User | None:
    if not valid_id(telegram_id):
        return None
    return session.scalars(select(User).where(User.telegram_id == telegram_id)).one_or_none()


def find_users(session: Session, target: str) -> Sequence[User]:
    """Who a Telegram id or an @username names: none or one (a username has one holder, as
    the schema's unique index on lower(username) guarantees)."""
    target = target.strip()
    digits = target.removeprefix("-")
    # ASCII only: str.isdigit accepts "²", which int() refuses; 20 digits hold any BIGINT and
    # keep int() off huge strings.
    if digits.isascii() and digits.isdigit():
        user = user_by_telegram_id(session, int(target)) if len(digits) <= 20 else None
        return [user] if user is not None else []
    name = target.removeprefix("@").lower()
    if not name:
        return []
    return session.scalars(
        select(User)
        .where(func.lower(User.username) == name, User.telegram_id.is_not(None))
        .order_by(User.id)
        .limit(2)
    ).all()


def is_staff() -> ColumnElement[bool]:
    """Staff or admins who still have an identity (erased users have none)."""
    return and_(User.role.in_([Role.STAFF.value, Role.ADMIN.value]), User.telegram_id.is_not(None))


def _staff() -> Select[User]:
    return select(User).where(is_staff()).order_by(User.id)


def staff_members(session: Session) -> Sequence[User]:
    return session.scalars(_staff()).all()


def request_by_id(session: Session, request_id: int) -> Request | None:
    return session.get(Request, request_id) if valid_id(request_id) else None


def lock_request(session: Session, request_id: int) -> Request | None:
    """The request row, locked for this transaction: concurrent actions on it take turns."""
    if not valid_id(request_id):
        return None
    return session.scalars(
        select(Request).where(Request.id == request_id).with_for_update()
    ).one_or_none()


@dataclass(frozen=True)
class Order:
    """A list's order: sort keys that all go one way, the last the row's id (unique, so the
    order is total). A key running against the others is written negated (-rank): then one
    row-value comparison with a row's keys finds the rows after it, or before it."""

    keys: tuple[SQLColumnExpression[Any], ...]
    descending: bool = False

    def sort(self, query: Select[T], *, reverse: bool = False) -> Select[T]:
        descending = self.descending != reverse
        return query.order_by(*(k.desc() if descending else k.asc() for k in self.keys))


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: Sequence[T]
    total: int
    number: int  # 0-based, for display only: what the page buttons said it would be
    pages: int
    has_prev: bool
    has_next: bool


def page_of(
    session: Session, query: Select[T], order: Order, page: int, size: int, edge: int | None
) -> Page[T]:
    """One page of `query` in `order`: the first (no `edge`), or the `size` rows after the row
    whose id is `edge` (▶) or before row -`edge` (◀), found by their keys, never an OFFSET.
    Counted with the very same query; `page` only numbers it, clamped into range. The boundary
    row gone (or forged), or ◀ reaching the start: the first page."""
    query = query.order_by(None)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // size))
    if edge and valid_id(abs(edge)):
        back = edge < 0
        rows = _beside(session, query, order, abs(edge), back=back, limit=size + 1)
        if rows and not (back and len(rows) <= size):
            more, rows = len(rows) > size, rows[:size]
            number = min(max(page, 0), pages - 1)
            if back:
                return Page(rows[::-1], total, number, pages, has_prev=more, has_next=True)
            return Page(rows, total, number, pages, has_prev=True, has_next=more)
    # size + 1 rows: whether there is a next page, whatever the count said.
    rows = session.scalars(order.sort(query).limit(size + 1)).all()
    return Page(rows[:size], total, 0, pages, has_prev=False, has_next=len(rows) > size)


def _beside(
    session: Session, query: Select[T], order: Order, edge: int, *, back: bool, limit: int
) -> Sequence[T]:
    """Up to `limit` rows next to row `edge`, nearest first: after it, or before it (`back`).
    Its keys are read within the same statement: a row gone has none, and nothing is found."""
    boundary = select(*order.keys).where(order.keys[-1] == edge).correlate(None)
    keys, their = tuple_(*order.keys), boundary.scalar_subquery()
    beyond = keys > their if order.descending == back else keys < their
    return session.scalars(order.sort(query.where(beyond), reverse=back).limit(limit)).all()


_NEWEST_FIRST = Order((Request.id,), descending=True)


def my_requests(
    session: Session, author_id: int, page: int, size: int, *, edge: int | None = None
) -> Page[Request]:
    query = select(Request).where(Request.author_id == author_id)
    return page_of(session, query, _NEWEST_FIRST, page, size, edge)


def assigned_to(
    session: Session, user_id: int, page: int, size: int, *, edge: int | None = None
) -> Page[Request]:
    """Requests assigned to `user_id`: open ones first, then the rest; newest first in each."""
    is_open = case((Request.status.in_([s.value for s in OPEN_STATUSES]), 1), else_=0)
    query = select(Request).where(Request.assignee_id == user_id)
    return page_of(session, query, Order((is_open, Request.id), descending=True), page, size, edge)


# --- SLA: the time within which an open request should be done, per priority ----------------
# The clock starts at creation, restarts at reopening and at each escalation (which raises the
# priority, so the new priority's SLA counts from then).


def sla_clock(session: Session) -> ColumnElement[Any]:
    """When each request's SLA clock started, in SQL."""
    reopened_at = (
        select(func.max(RequestEvent.created_at))
        .where(RequestEvent.request_id == Request.id, RequestEvent.action == EventAction.REOPEN)
        .scalar_subquery()
    )
    latest = func.greatest if session.get_bind().dialect.name == "postgresql" else func.max
    return latest(
        Request.created_at,
        func.coalesce(Request.escalated_at, Request.created_at),
        case((Request.status == Status.REOPENED, reopened_at), else_=Request.created_at),
    )


def overdue_clause(
    session: Session, at: datetime, sla: Mapping[str, timedelta]
) -> ColumnElement[bool]:
    """Open requests past their priority's SLA at `at`."""
    return and_(Request.status.in_([s.value for s in OPEN_STATUSES]), _past_sla(session, at, sla))


def _past_sla(session: Session, at: datetime, sla: Mapping[str, timedelta]) -> ColumnElement[bool]:
    """Requests whose priority's SLA has run out by `at`, whatever their status."""
    clock = sla_clock(session)
    return or_(
        false(), *(and_(Request.priority == p, clock < at - span) for p, span in sla.items())
    )


def overdue_by(
    request: Request, events: Sequence[RequestEvent], at: datetime, sla: Mapping[str, timedelta]
) -> timedelta | None:
    """How long past its SLA an open request is (None: it is not), from its loaded history."""
    if request.status not in OPEN_STATUSES or request.priority not in sla:
        return None
    start = as_utc(request.created_at)
    if request.escalated_at is not None:
        start = max(start, as_utc(request.escalated_at))
    if request.status == Status.REOPENED:
        reopens = [as_utc(e.created_at) for e in events if e.action == EventAction.REOPEN]
        start = max([start, *reopens])
    late = at - (start + sla[request.priority])
    return late if late > timedelta(0) else None


def open_queue(
    session: Session,
    status: Status | None,
    location: str | None,
    page: int,
    size: int,
    *,
    at: datetime | None = None,
    sla: Mapping[str, timedelta] | None = None,
    priority: str | None = None,
    unassigned: bool = False,
    overdue: bool = False,
    edge: int | None = None,
) -> Page[Request]:
    """Open requests: overdue first (given the time and the SLAs), then most urgent, then
    oldest; narrowed to a priority, to those nobody took, or to the overdue ones.

    ":" is ignored, in the filter and in places: the filter travels in page buttons' callback
    data, where ":" is the separator, and every page must match as the first one did.
    """
    statuses = [status.value] if status else [s.value for s in OPEN_STATUSES]
    query = select(Request).where(Request.status.in_(statuses))
    if location:
        location = location.replace(":", "")
        place = func.replace(Request.location, ":", "")
        query = query.where(place.icontains(location, autoescape=True))
    if priority:
        query = query.where(Request.priority == priority)
    if unassigned:
        query = query.where(Request.assignee_id.is_(None))
    if overdue:
        if at is None or not sla:
            raise ValueError("the overdue filter needs the time and the SLAs")
        query = query.where(overdue_clause(session, at, sla))
    keys: tuple[SQLColumnExpression[Any], ...] = (-_PRIORITY_RANK, Request.created_at, Request.id)
    if at is not None and sla:
        # Without the status (what is listed is open): a page's last request, closed since,
        # keeps its place, and ▶ goes on after it.
        keys = (case((_past_sla(session, at, sla), 0), else_=1), *keys)
    return page_of(session, query, Order(keys), page, size, edge)


# The expressions of the full-text indexes (migration 0010): the same text, or the planner
# cannot use them.
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")
_SPACE: ColumnElement[str] = literal_column("' '")


def _request_document() -> ColumnElement[Any]:
    text = Request.title + _SPACE + Request.description + _SPACE + Request.location
    return func.to_tsvector(_SIMPLE, text)


def search_requests(
    session: Session, query: str, page: int, size: int, *, edge: int | None = None
) -> Page[Request]:
    """Newest first."""
    return page_of(session, search_query(session, query), _NEWEST_FIRST, page, size, edge)


def search_query(session: Session, query: str) -> Select[Request]:
    """Requests whose title, description and place, or one of whose comments, hold every word
    of `query`. PostgreSQL: full-text search over GIN indexes ('simple'
    configuration: whole words, any language); SQLite: LIKE, each word anywhere."""
    if session.get_bind().dialect.name == "postgresql":
        words = func.plainto_tsquery(_SIMPLE, query)
        # A union of two index scans: an OR across the tables would scan every request.
        found = union(
            select(Request.id).where(_request_document().op("@@")(words)),
            select(Comment.request_id).where(
                func.to_tsvector(_SIMPLE, Comment.text).op("@@")(words)
            ),
        )
        where: ColumnElement[bool] = Request.id.in_(select(found.subquery().c[0]))
    else:
        where = and_(
            true(),
            *(
                or_(
                    Request.title.icontains(word, autoescape=True),
                    Request.description.icontains(word, autoescape=True),
                    Request.location.icontains(word, autoescape=True),
                    exists().where(
                        Comment.request_id == Request.id,
                        Comment.text.icontains(word, autoescape=True),
                    ),
                )
                for word in query.split()
            ),
        )
    return select(Request).where(where)


def staff_page(session: Session, page: int, size: int, *, edge: int | None = None) -> Page[User]:
    return page_of(session, _staff(), Order((User.id,)), page, size, edge)


def latest_role_changes(
    session: Session, limit: int
) -> Sequence[tuple[RoleChange, User, User | None]]:
    """The latest role changes, newest first: the change, whose role, who changed it."""
    by = aliased(User)
    rows = session.execute(
        select(RoleChange, User, by)
        .join(User, User.id == RoleChange.user_id)
        .outerjoin(by, by.id == RoleChange.changed_by)
        .order_by(RoleChange.id.desc())
        .limit(limit)
    ).all()
    return [(change, user, changer) for change, user, changer in rows]


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
