"""SLA escalation on PostgreSQL: the breach query (greatest(), SKIP LOCKED) and two runs at
once, each breach escalated once."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.clock import now
from db.models import Request, RequestEvent, User
from workers.upkeep.escalation import escalate

AT = now().replace(microsecond=0)


def test_two_runs_at_once_on_postgres(pg: Engine) -> None:
    with Session(pg) as s:
        author = User(telegram_id=8201, role="resident")
        s.add(author)
        s.flush()
        for n in range(40):  # 40 breaches (urgent: 4 h SLA), 10 not yet
            s.add(
                Request(author_id=author.id, title=f"late {n}", description="…", location="Hall",
                        priority="urgent", status="new", created_at=AT - timedelta(hours=5))
            )  # fmt: skip
        for n in range(10):
            s.add(
                Request(author_id=author.id, title=f"fine {n}", description="…", location="Hall",
                        priority="urgent", status="new", created_at=AT - timedelta(hours=1))
            )  # fmt: skip
        s.commit()
    results: list[int] = []
    runs = [threading.Thread(target=lambda: results.append(escalate(at=AT)[0])) for _ in "abc"]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sum(results) == 40, results
    with Session(pg) as s:
        escalated = s.scalar(
            select(func.count()).select_from(RequestEvent).where(RequestEvent.action == "escalated")
        )
        marked = s.scalar(select(func.count()).where(Request.escalated_at == AT))
    assert (escalated, marked) == (40, 40)
    assert escalate(at=AT + timedelta(hours=1)) == (0, [])
