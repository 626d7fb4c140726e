"""The desk's lists at scale on PostgreSQL: with 200,000 requests on record (2% open) and
20,000 users, the queries behind /queue (every filter), /my, /mine, /find, /staff and a card
are planned on indexes, never a scan of the whole requests table: each list's first page, and
the pages after (▶) and before (◀) a row deep in it. The statements are the ones the code
really runs, caught as they are executed, then EXPLAINed with their parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from core.clock import now
from core.domain import Priority, Status
from core.settings import Settings
from db import requests as q

pytestmark = pytest.mark.integration

REQUESTS, USERS, STAFF = 200_000, 20_000, 50
SEED = f"""
INSERT INTO users (telegram_id, role, language, reachable)
SELECT 100000 + g, CASE WHEN g <= {STAFF} THEN 'staff' ELSE 'resident' END, 'en', true
FROM generate_series(1, {USERS}) g;
INSERT INTO requests (author_id, assignee_id, title, description, location, priority, status,
                      version, created_at, updated_at, accepted_at, done_at)
SELECT {STAFF} + 1 + (g * 7919) % ({USERS} - {STAFF}),
       CASE WHEN g % 50 = 0 AND g % 100 <> 0 THEN NULL ELSE 1 + g % {STAFF} END,
       'Request ' || g, 'Details of ' || g, 'Room ' || (g % 500),
       (ARRAY['low', 'normal', 'high', 'urgent'])[1 + g % 4],
       CASE WHEN g % 50 <> 0 THEN 'done' WHEN g % 100 = 0 THEN 'accepted' ELSE 'new' END,
       1, ts, ts, ts + interval '1 hour', CASE WHEN g % 50 <> 0 THEN ts + interval '1 day' END
FROM (SELECT g, now() - (g || ' minutes')::interval AS ts FROM generate_series(1, {REQUESTS}) g) s;
ANALYZE users; ANALYZE requests; ANALYZE request_events; ANALYZE comments;
"""


@pytest.fixture
def seeded(pg: Engine) -> Engine:
    with pg.begin() as conn:
        for statement in SEED.split(";"):
            if statement.strip():
                conn.execute(text(statement))
    return pg


@contextmanager
def caught(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def catch(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", catch)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", catch)


def plans(engine: Engine, run: Callable[..., object], *args: Any) -> list[str]:
    """The plans of the statements `run(session, *args)` executes."""
    with caught(engine) as statements, Session(engine) as session:
        run(session, *args)
    assert statements, "nothing ran"
    found = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            found.append("\n".join(r[0] for r in rows))
    return found


def _card(session: Session, request_id: int) -> None:
    """What a card reads (workers.desk.handlers.show_request)."""
    request = q.request_by_id(session, request_id)
    assert request is not None
    _ = request.attachments
    comments = q.comments_of(session, request_id)
    q.events_of(session, request_id)
    q.users_by_id(
        session, {request.author_id, request.assignee_id} | {c.author_id for c in comments}
    )


SLA = Settings().sla_by_priority()
AT = now() + timedelta(days=3)  # some open requests are overdue by then


# A list: (session, page size, edge) -> one of its pages.
List = Callable[[Session, int, int | None], q.Page[Any]]
AUTHOR, ASSIGNEE = STAFF + 123, 7  # a resident with ~10 requests; a staff member with 4,000
LISTS: dict[str, List] = {
    "queue": lambda s, n, e: q.open_queue(s, None, None, 3, n, at=AT, sla=SLA, edge=e),
    "queue new": lambda s, n, e: q.open_queue(s, Status.NEW, None, 3, n, at=AT, sla=SLA, edge=e),
    "queue urgent": lambda s, n, e: q.open_queue(
        s, None, None, 3, n, at=AT, sla=SLA, priority=Priority.URGENT.value, edge=e
    ),
    "queue unassigned": lambda s, n, e: q.open_queue(s, None, None, 3, n, unassigned=True, edge=e),
    "queue overdue": lambda s, n, e: q.open_queue(
        s, None, None, 3, n, at=AT, sla=SLA, overdue=True, edge=e
    ),
    "queue place": lambda s, n, e: q.open_queue(s, None, "room 42", 3, n, at=AT, sla=SLA, edge=e),
    "my": lambda s, n, e: q.my_requests(s, AUTHOR, 3, n, edge=e),
    "mine": lambda s, n, e: q.assigned_to(s, ASSIGNEE, 3, n, edge=e),
    "find": lambda s, n, e: q.search_requests(s, "room 42", 3, n, edge=e),
    "staff": lambda s, n, e: q.staff_page(s, 3, n, edge=e),
}


def _deep(engine: Engine, page: List) -> int | None:
    """The id of a row three quarters down the list, if it has any."""
    with Session(engine) as session:
        rows = page(session, REQUESTS, None).rows
        if not rows:
            return None
        edge = rows[len(rows) * 3 // 4].id
        # Rows on both sides: the pages after and before it are found by it, not the first.
        assert page(session, 5, edge).has_prev and page(session, 5, -edge).has_prev
        return edge


def test_desk_lists_are_planned_on_indexes(seeded: Engine) -> None:
    for plan in plans(seeded, _card, 4200):
        assert "Seq Scan on requests" not in plan, f"card:\n{plan}"
    for name, page in LISTS.items():
        # A list without rows ("queue urgent": none open) still plans its pages: the boundary's
        # keys are read as it runs.
        edge = _deep(seeded, page) or REQUESTS // 2
        for at in (None, edge, -edge):
            for plan in plans(seeded, page, 5, at):
                where = f"{name}, edge {at}:\n{plan}"
                assert "Index" in plan and "Seq Scan on requests" not in plan, where
                assert "Seq Scan on users" not in plan, where
