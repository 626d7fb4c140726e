"""A report's figures, computed by aggregation in the database (never by loading requests
into Python): a handful of GROUP BY queries on indexed periods, whatever the table's size.

PostgreSQL computes percentiles with `percentile_cont`; SQLite, which has none, with window
functions that pick the two neighbouring values, interpolated the same way (see `_percentiles`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session

from core.domain import OPEN_STATUSES, EventAction, Status
from db.models import Request, RequestEvent, User
from db.requests import overdue_clause
from workers.reports.chart import DayPoint
from workers.reports.periods import Period, midnight

# Transitions counted per period, and what each does to the open backlog.
_COUNTED = {
    EventAction.CREATED: +1,
    EventAction.DONE: -1,
    EventAction.REJECT: -1,
    EventAction.CANCEL: -1,
    EventAction.REOPEN: +1,
}
# The chart's days are folded from quarter-hour buckets: every time zone's offset is a
# multiple of 15 minutes, so buckets never straddle a local midnight.
BUCKET_S = 900
TOP_LOCATIONS = 5
_OPEN = sorted(OPEN_STATUSES)
_ASSIGNED_OPEN = sorted(OPEN_STATUSES - {Status.NEW})


@dataclass(frozen=True)
class Spread:
    """How long something took: how many, the median and the 90th percentile."""

    count: int = 0
    p50: timedelta | None = None
    p90: timedelta | None = None


@dataclass(frozen=True)
class StaffLine:
    user_id: int
    name: str
    open_assigned: int
    completed: int


@dataclass(frozen=True)
class Figures:
    period: Period
    generated_at: datetime
    transitions: dict[str, int]  # EventAction value -> count in the period
    open_by_status: dict[str, int]
    open_by_priority: dict[str, int]
    overdue: int
    to_accept: Spread
    to_done: Spread
    staff: list[StaffLine]
    top_locations: list[tuple[str, int]]
    rating_count: int
    rating_avg: float | None
    days: list[DayPoint] = field(default_factory=list)

    def count(self, action: EventAction) -> int:
        return self.transitions.get(action.value, 0)

    @property
    def open_total(self) -> int:
        return sum(self.open_by_status.values())


def compute(session: Session, period: Period, at: datetime, sla: dict[str, timedelta]) -> Figures:
    """Figures of `period` as of `at`; `sla` is each priority's time to done (for overdue)."""
    in_period = _between(RequestEvent.created_at, period.start, period.end)
    transitions = _pairs(
        session,
        select(RequestEvent.action, func.count())
        .where(in_period, RequestEvent.action.in_([a.value for a in _COUNTED]))
        .group_by(RequestEvent.action),
    )
    is_open = Request.status.in_(_OPEN)
    open_by_status = _pairs(
        session, select(Request.status, func.count()).where(is_open).group_by(Request.status)
    )
    open_by_priority = _pairs(
        session, select(Request.priority, func.count()).where(is_open).group_by(Request.priority)
    )
    rating = session.execute(
        select(func.count(), func.avg(cast(RequestEvent.note, Float))).where(
            in_period, RequestEvent.action == EventAction.RATED
        )
    ).one()
    return Figures(
        period=period,
        generated_at=at,
        transitions=transitions,
        open_by_status=open_by_status,
        open_by_priority=open_by_priority,
        overdue=_overdue(session, at, sla),
        to_accept=_percentiles(
            session,
            _seconds(session, Request.accepted_at, Request.created_at),
            _between(Request.accepted_at, period.start, period.end),
        ),
        to_done=_percentiles(
            session,
            _seconds(session, Request.done_at, Request.created_at),
            _between(Request.done_at, period.start, period.end),
        ),
        staff=_staff(session, period),
        top_locations=[
            (str(place), int(n))
            for place, n in session.execute(
                select(Request.location, func.count().label("n"))
                .where(_between(Request.created_at, period.start, period.end))
                .group_by(Request.location)
                .order_by(func.count().desc(), Request.location)
                .limit(TOP_LOCATIONS)
            )
        ],
        rating_count=int(rating[0] or 0),
        rating_avg=float(rating[1]) if rating[1] is not None else None,
        days=_days(session, period, at, sum(open_by_status.values())),
    )


def _between(column: Any, start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(column >= start, column < end)


def _pairs(session: Session, stmt: Select[Any, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in session.execute(stmt)}


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _epoch(session: Session, column: Any) -> ColumnElement[Any]:
    if _postgres(session):
        return func.extract("epoch", column)
    return cast(func.strftime("%s", column), Integer)


def _seconds(session: Session, later: Any, earlier: Any) -> ColumnElement[Any]:
    if _postgres(session):
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _percentiles(session: Session, seconds: ColumnElement[Any], where: Any) -> Spread:
    if _postgres(session):
        row = session.execute(
            select(
                func.count(),
                func.percentile_cont(0.5).within_group(seconds),
                func.percentile_cont(0.9).within_group(seconds),
            ).where(where)
        ).one()
        return Spread(int(row[0]), _delta(row[1]), _delta(row[2]))
    # percentile_cont(p) over n sorted values: the value at position p*(n-1), interpolated
    # between its two neighbours. Ranked in SQL; only the neighbours come back.
    ranked = select(
        seconds.label("s"),
        (func.row_number().over(order_by=seconds) - 1).label("rn"),
        func.count().over().label("n"),
    ).where(where)
    sub = ranked.subquery()
    picks: list[Any] = []
    for p in (0.5, 0.9):
        pos = literal(p) * (sub.c.n - 1)
        low = cast(pos, Integer)
        high = low + case((pos > low, 1), else_=0)
        picks += [
            func.max(case((sub.c.rn == low, sub.c.s))),
            func.max(case((sub.c.rn == high, sub.c.s))),
            func.max(pos - low),
        ]
    row = session.execute(select(func.count(), *picks).select_from(sub)).one()
    if not row[0]:
        return Spread()

    def interpolate(low: Any, high: Any, frac: Any) -> timedelta:
        return timedelta(seconds=float(low) + float(frac) * (float(high) - float(low)))

    return Spread(int(row[0]), interpolate(*row[1:4]), interpolate(*row[4:7]))


def _delta(seconds: Any) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=float(seconds))


def _overdue(session: Session, at: datetime, sla: dict[str, timedelta]) -> int:
    """Open requests past their priority's SLA (see db.requests.sla_clock)."""
    return int(session.scalar(select(func.count()).where(overdue_clause(session, at, sla))) or 0)


def _staff(session: Session, period: Period) -> list[StaffLine]:
    load = _pairs(
        session,
        select(Request.assignee_id, func.count())
        .where(Request.status.in_(_ASSIGNED_OPEN), Request.assignee_id.is_not(None))
        .group_by(Request.assignee_id),
    )
    done = _pairs(
        session,
        select(RequestEvent.actor_id, func.count())
        .where(
            _between(RequestEvent.created_at, period.start, period.end),
            RequestEvent.action == EventAction.DONE,
            RequestEvent.actor_id.is_not(None),
        )
        .group_by(RequestEvent.actor_id),
    )
    ids = {int(k) for k in load} | {int(k) for k in done}
    if not ids:
        return []
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    lines = [
        StaffLine(i, staff_name(users.get(i)), load.get(str(i), 0), done.get(str(i), 0))
        for i in ids
    ]
    return sorted(lines, key=lambda s: (-s.completed, -s.open_assigned, s.name))


def staff_name(user: User | None) -> str:
    """How reports name a staff member (staff are named on cards too; residents never are)."""
    if user is None:
        return "—"
    return name_from(user.id, user.first_name, user.last_name, user.username, user.erased_at)


def name_from(
    user_id: int,
    first_name: str | None,
    last_name: str | None,
    username: str | None,
    erased_at: datetime | None,
) -> str:
    if erased_at is not None:
        return "—"
    full = " ".join(p for p in (first_name, last_name) if p)
    return full or (f"@{username}" if username else f"#{user_id}")


def _days(session: Session, period: Period, at: datetime, open_now: int) -> list[DayPoint]:
    """Created and done per local day of the chart's window, and the backlog at each day's end
    (today's open count, walked back through each day's net change)."""
    days = period.chart_days()
    start = midnight(days[0], period.tz)
    bucket = cast(_epoch(session, RequestEvent.created_at) / BUCKET_S, Integer)
    if _postgres(session):
        bucket = cast(func.floor(_epoch(session, RequestEvent.created_at) / BUCKET_S), Integer)
    rows = session.execute(
        select(bucket, RequestEvent.action, func.count())
        .where(
            RequestEvent.created_at >= start,
            RequestEvent.created_at < at,
            RequestEvent.action.in_([a.value for a in _COUNTED]),
        )
        .group_by(bucket, RequestEvent.action)
    )
    per_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for b, action, n in rows:
        day = datetime.fromtimestamp(int(b) * BUCKET_S, UTC).astimezone(period.tz).date()
        per_day[day][str(action)] += int(n)
    net_after = sum(
        n * _COUNTED[EventAction(a)]
        for d, counts in per_day.items()
        if d > days[-1]
        for a, n in counts.items()
    )
    backlog = open_now - net_after
    points: list[DayPoint] = []
    for day in reversed(days):
        counts = per_day.get(day, {})
        points.append(
            DayPoint(
                day, counts.get(EventAction.CREATED, 0), counts.get(EventAction.DONE, 0), backlog
            )
        )
        backlog -= sum(n * _COUNTED[EventAction(a)] for a, n in counts.items())
    return points[::-1]
