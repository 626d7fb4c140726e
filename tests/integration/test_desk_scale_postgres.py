"""The desk's lists at scale on PostgreSQL: with 200,000 requests on record (2% open) and
20,000 users, the queries behind /queue (every filter), /my, /mine and a card are planned on
indexes, never a scan of the whole requests table. The statements are the ones the code
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


def plans(engine: Engine, run: Callable[[Session], object]) -> list[str]:
    with caught(engine) as statements, Session(engine) as session:
        run(session)
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


def test_desk_lists_are_planned_on_indexes(seeded: Engine) -> None:
    author, staff = STAFF + 123, 7  # a resident with ~10 requests; a staff member with 4,000
    runs: dict[str, Callable[[Session], object]] = {
        "queue": lambda s: q.open_queue(s, None, None, 3, 5, at=AT, sla=SLA),
        "queue new": lambda s: q.open_queue(s, Status.NEW, None, 0, 5, at=AT, sla=SLA),
        "queue urgent": lambda s: q.open_queue(
            s, None, None, 0, 5, at=AT, sla=SLA, priority=Priority.URGENT.value
        ),
        "queue unassigned": lambda s: q.open_queue(s, None, None, 0, 5, unassigned=True),
        "queue overdue": lambda s: q.open_queue(s, None, None, 0, 5, at=AT, sla=SLA, overdue=True),
        "queue place": lambda s: q.open_queue(s, None, "room 42", 0, 5, at=AT, sla=SLA),
        "my": lambda s: q.my_requests(s, author, 0, 5),
        "mine": lambda s: q.assigned_to(s, staff, 1, 5),
        "card": lambda s: _card(s, 4200),
    }
    for name, run in runs.items():
        for plan in plans(seeded, run):
            assert "Seq Scan on requests" not in plan, f"{name}:\n{plan}"
