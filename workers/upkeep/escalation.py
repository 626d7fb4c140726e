"""SLA escalation: an open request past its priority's SLA is escalated once per breach.

Its priority goes one level up (urgent stays urgent), `escalated_at` restarts its clock with
the new priority's SLA, a history event records it, and a message naming it overdue goes to its
assignee (or every staff member when nobody has it) and to the admins. The rows are selected
and changed in one transaction with the breach condition re-checked under the row lock (SKIP
LOCKED on PostgreSQL; SQLite's transactions take the write lock at once), so two runs at once or
a redelivered run escalate each breach once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import now
from core.domain import EventAction, Priority
from core.logging import get_logger
from core.roles import Role
from core.settings import get_settings
from core.texts import duration, t
from db.models import Request, RequestEvent, User
from db.requests import overdue_clause, sla_clock, staff_members, users_by_id
from db.session import session_scope
from workers.desk.render import name_of, priority_text
from workers.outbox import Replies

log = get_logger(__name__)

BATCH = 200


def raised(priority: str) -> str:
    order = list(Priority)
    return order[min(order.index(Priority(priority)) + 1, len(order) - 1)].value


def escalate(*, at: datetime | None = None, budget_s: float | None = None) -> tuple[int, list[int]]:
    """Escalate every breach due at `at`; returns how many, and the outbox rows to deliver."""
    at = at or now()
    sla = get_settings().sla_by_priority()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    escalated, notices = 0, []
    while deadline is None or time.monotonic() < deadline:
        with session_scope() as session:
            rows = session.execute(
                select(Request, sla_clock(session))
                .where(overdue_clause(session, at, sla))
                .order_by(Request.id)
                .limit(BATCH)
                .with_for_update(of=Request, skip_locked=True)
            ).all()
            # Who hears of it, looked up once a batch (a large site has hundreds of staff).
            people = _People(session)
            written = [
                _escalate_one(session, request, started, at, sla, people)
                for request, started in rows
            ]
            session.flush()  # one flush a batch: the outbox rows go in as multi-row INSERTs
            notices += [r.id for replies in written for r in replies.rows]
            escalated += len(rows)
        if len(rows) < BATCH:
            break
    if escalated:
        log.info("sla.escalated", requests=escalated, notices=len(notices))
    return escalated, notices


class _People:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.staff = [u for u in staff_members(session) if u.role == Role.STAFF]
        self.admins = list(session.scalars(select(User).where(User.role == Role.ADMIN)))


def _escalate_one(
    session: Session,
    request: Request,
    started: datetime,
    at: datetime,
    sla: Mapping[str, timedelta],
    people: _People,
) -> Replies:
    from core.clock import as_utc

    late = at - (as_utc(started) + sla[request.priority])
    before, after = request.priority, raised(request.priority)
    request.priority, request.escalated_at = after, at
    session.add(
        RequestEvent(
            request_id=request.id,
            action=EventAction.ESCALATED,
            from_status=before,
            to_status=after,
            note=duration(late, "en"),
            created_at=at,
        )
    )
    # One notice per breach: the key names the request and the moment of this escalation.
    replies = Replies.for_job(session, f"escalate:{request.id}:{at.isoformat()}")
    assignee = users_by_id(session, {request.assignee_id}).get(request.assignee_id or 0)
    told = [assignee] if assignee is not None else list(people.staff)
    told += people.admins
    seen: set[int] = set()
    for user in told:
        if user.telegram_id is None or not user.reachable or user.telegram_id in seen:
            continue
        seen.add(user.telegram_id)
        lang = user.language
        replies.message(
            user.telegram_id,
            t(
                "sla.overdue",
                lang,
                id=request.id,
                title=request.title,
                late=duration(late, lang),
                location=request.location,
                assignee=name_of(assignee, lang) if assignee else t("nobody", lang),
                before=priority_text(before, lang),
                after=priority_text(after, lang),
            ),
            user_id=user.id,
            request_id=request.id,
        )
    return replies
