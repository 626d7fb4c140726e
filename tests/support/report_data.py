"""A small fixed site for the report tests, with its figures worked out by hand.

The report is taken at AT (18:00 UTC on 22.11.2026) for "today" in UTC. Requests, by number:
  1 Room 101, normal: created 08:00, accepted 09:00 by Anna, done 12:00 by Anna, rated 5 at 13:00
  2 Room 101, high: created 09:00, accepted 09:30 by Bob, in progress
  3 Hall, urgent: created 10:00, new (urgent's SLA is 4 h: overdue since 14:00)
  4 Room 101, normal: created 21.11 10:00, accepted 08:00 by Anna (22 h), done 16:00 (30 h), rated 3
  5 Kitchen, low: created 20.11 10:00, rejected 11:00 by Bob
  6 Kitchen, normal: created 11:00, cancelled 11:30 by its author
  7 Roof, normal: created 15.11, accepted and done 16.11 by Anna, reopened 14:00 (clock restarts)
  8 Basement, normal: created 18.11 10:00, accepted 12:00 by Bob (3 d SLA: overdue since 21.11)
  9 Hall, high: created 21.11 12:00, new (1 d SLA: overdue since 12:00)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session

from core.domain import EventAction
from db.models import Request, RequestEvent, User

AT = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)
DAY = AT.date()


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def seed(session: Session) -> dict[str, int]:
    anna = User(telegram_id=501, role="staff", first_name="Anna", last_name="Ivanova")
    bob = User(telegram_id=502, role="staff", username="bob")
    boss = User(telegram_id=503, role="admin", first_name="Boss", language="en")
    resident = User(telegram_id=601, role="resident", first_name="Rita", username="rita")
    session.add_all([anna, bob, boss, resident])
    session.flush()

    def request(
        rid: int,
        title: str,
        location: str,
        priority: str,
        created: datetime,
        status: str,
        events: list[tuple[str, str | None, str | None, User | None, datetime, str | None]],
        **fields: object,
    ) -> None:
        session.add(
            Request(
                id=rid,
                author_id=resident.id,
                title=title,
                description="…",
                location=location,
                priority=priority,
                status=status,
                created_at=created,
                updated_at=created,
                **fields,
            )
        )
        session.flush()
        session.add(
            RequestEvent(
                request_id=rid,
                actor_id=resident.id,
                action=EventAction.CREATED,
                to_status="new",
                created_at=created,
            )
        )
        for action, before, after, actor, when, note in events:
            session.add(
                RequestEvent(
                    request_id=rid,
                    actor_id=actor.id if actor else None,
                    action=action,
                    from_status=before,
                    to_status=after,
                    note=note,
                    created_at=when,
                )
            )

    A, B = anna, bob
    request(1, "Light broken", "Room 101", "normal", at(22, 8), "done", [
        ("accept", "new", "accepted", A, at(22, 9), None),
        ("start", "accepted", "in_progress", A, at(22, 10), None),
        ("done", "in_progress", "done", A, at(22, 12), "fixed"),
        ("rated", None, None, resident, at(22, 13), "5"),
    ], assignee_id=A.id, accepted_at=at(22, 9), started_at=at(22, 10), done_at=at(22, 12),
        rating=5)  # fmt: skip
    request(2, "Tap drips", "Room 101", "high", at(22, 9), "in_progress", [
        ("accept", "new", "accepted", B, at(22, 9, 30), None),
        ("start", "accepted", "in_progress", B, at(22, 9, 45), None),
    ], assignee_id=B.id, accepted_at=at(22, 9, 30), started_at=at(22, 9, 45))  # fmt: skip
    request(3, "Smoke smell", "Hall", "urgent", at(22, 10), "new", [])
    request(4, "Door sticks", "Room 101", "normal", at(21, 10), "done", [
        ("accept", "new", "accepted", A, at(22, 8), None),
        ("start", "accepted", "in_progress", A, at(22, 8, 30), None),
        ("done", "in_progress", "done", A, at(22, 16), None),
        ("rated", None, None, resident, at(22, 17), "3"),
    ], assignee_id=A.id, accepted_at=at(22, 8), started_at=at(22, 8, 30), done_at=at(22, 16),
        rating=3)  # fmt: skip
    request(5, "Noise", "Kitchen", "low", at(20, 10), "rejected", [
        ("reject", "new", "rejected", B, at(22, 11), "not ours"),
    ], closed_at=at(22, 11))  # fmt: skip
    request(6, "Oops", "Kitchen", "normal", at(22, 11), "cancelled", [
        ("cancel", "new", "cancelled", resident, at(22, 11, 30), None),
    ], closed_at=at(22, 11, 30))  # fmt: skip
    request(7, "Leak", "Roof", "normal", at(15, 10), "reopened", [
        ("accept", "new", "accepted", A, at(16, 9), None),
        ("start", "accepted", "in_progress", A, at(16, 9, 30), None),
        ("done", "in_progress", "done", A, at(16, 12), None),
        ("reopen", "done", "reopened", resident, at(22, 14), "still leaks"),
    ], assignee_id=A.id, accepted_at=at(16, 9), started_at=at(16, 9, 30))  # fmt: skip
    request(8, "Pipe", "Basement", "normal", at(18, 10), "accepted", [
        ("accept", "new", "accepted", B, at(18, 12), None),
    ], assignee_id=B.id, accepted_at=at(18, 12))  # fmt: skip
    request(9, "Lift", "Hall", "high", at(21, 12), "new", [])
    session.flush()
    return {"anna": anna.id, "bob": bob.id, "boss": boss.id, "resident": resident.id}


# The figures, by hand (see the module's docstring).
TRANSITIONS = {"created": 4, "done": 2, "reject": 1, "cancel": 1, "reopen": 1}
OPEN_BY_STATUS = {"new": 2, "accepted": 1, "in_progress": 1, "reopened": 1}
OPEN_BY_PRIORITY = {"urgent": 1, "high": 2, "normal": 2}
OVERDUE = 3
# To accept: 30 min, 1 h, 22 h. percentile_cont: p50 at position 1; p90 at 1.8.
TO_ACCEPT = (3, timedelta(hours=1), timedelta(seconds=3600 + 0.8 * (79200 - 3600)))
# To done: 4 h, 30 h. p50 at position 0.5, p90 at 0.9.
TO_DONE = (2, timedelta(seconds=14400 + 0.5 * 93600), timedelta(seconds=14400 + 0.9 * 93600))
STAFF = [("Anna Ivanova", 1, 2), ("@bob", 2, 0)]  # name, open assigned, done today
TOP_LOCATIONS = [("Room 101", 2), ("Hall", 1), ("Kitchen", 1)]
RATING = (2, 4.0)
# Chart: 14 days to the 22nd, (created, done, open at the day's end).
DAYS = {
    date(2026, 11, 15): (1, 0, 1),
    date(2026, 11, 16): (0, 1, 0),
    date(2026, 11, 18): (1, 0, 1),
    date(2026, 11, 19): (0, 0, 1),
    date(2026, 11, 20): (1, 0, 2),
    date(2026, 11, 21): (2, 0, 4),
    date(2026, 11, 22): (4, 2, 5),
}

CSV = """\
id,created,status,priority,location,title,assignee,accepted,done,hours_to_done,rating
1,2026-11-22T08:00:00+00:00,done,normal,Room 101,Light broken,Anna Ivanova,2026-11-22T09:00:00+00:00,2026-11-22T12:00:00+00:00,4.0,5
2,2026-11-22T09:00:00+00:00,in_progress,high,Room 101,Tap drips,@bob,2026-11-22T09:30:00+00:00,,,
3,2026-11-22T10:00:00+00:00,new,urgent,Hall,Smoke smell,,,,,
4,2026-11-21T10:00:00+00:00,done,normal,Room 101,Door sticks,Anna Ivanova,2026-11-22T08:00:00+00:00,2026-11-22T16:00:00+00:00,30.0,3
5,2026-11-20T10:00:00+00:00,rejected,low,Kitchen,Noise,,,,,
6,2026-11-22T11:00:00+00:00,cancelled,normal,Kitchen,Oops,,,,,
7,2026-11-15T10:00:00+00:00,reopened,normal,Roof,Leak,Anna Ivanova,2026-11-16T09:00:00+00:00,,,
"""


def assert_figures(figures: object) -> None:
    """The hand-worked figures, whichever database computed them."""
    from workers.reports.figures import Figures

    assert isinstance(figures, Figures)
    f = figures
    assert f.transitions == TRANSITIONS
    assert f.open_by_status == OPEN_BY_STATUS
    assert f.open_by_priority == OPEN_BY_PRIORITY
    assert f.overdue == OVERDUE
    for spread, (count, p50, p90) in ((f.to_accept, TO_ACCEPT), (f.to_done, TO_DONE)):
        assert spread.count == count
        assert spread.p50 is not None and spread.p90 is not None
        assert abs(spread.p50 - p50) < timedelta(seconds=1), (spread.p50, p50)
        assert abs(spread.p90 - p90) < timedelta(seconds=1), (spread.p90, p90)
    assert [(s.name, s.open_assigned, s.completed) for s in f.staff] == STAFF
    assert f.top_locations == TOP_LOCATIONS
    assert (f.rating_count, f.rating_avg) == RATING
    assert len(f.days) == 14
    assert f.days[0].day == date(2026, 11, 9) and f.days[-1].day == DAY
    for point in f.days:
        assert (point.created, point.done, point.backlog) == DAYS.get(point.day, (0, 0, 0)), point
