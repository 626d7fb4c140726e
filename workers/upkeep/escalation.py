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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, select
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
            if rows:
                breaches = [
                    _escalate_one(session, request, started, at, sla) for request, started in rows
                ]
                _raise_priorities(session, breaches, at)
                replies = _tell(session, breaches, at)
                session.flush()  # one flush a batch: events and notices go in as multi-row INSERTs
                notices += [r.id for r in replies.rows]
            escalated += len(rows)
        if len(rows) < BATCH:
            break
    if escalated:
        log.info("sla.escalated", requests=escalated, notices=len(notices))
    return escalated, notices


@dataclass(frozen=True)
class Breach:
    request: Request
    late: timedelta
    before: str
    after: str


def _escalate_one(
    session: Session,
    request: Request,
    started: datetime,
    at: datetime,
    sla: Mapping[str, timedelta],
) -> Breach:
    from core.clock import as_utc

    late = at - (as_utc(started) + sla[request.priority])
    before, after = request.priority, raised(request.priority)
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
    return Breach(request, late, before, after)


def _raise_priorities(session: Session, breaches: list[Breach], at: datetime) -> None:
    """One statement a batch (executemany), not an UPDATE per request; the rows are locked, and
    their version goes up as the ORM's own updates do, so a stale writer still fails."""
    table = cast(Table, Request.__table__)
    session.execute(
        table.update()
        .where(table.c.id == bindparam("rid"))
        .values(priority=bindparam("after"), escalated_at=at, version=table.c.version + 1),
        [{"rid": b.request.id, "after": b.after} for b in breaches],
    )


def _tell(session: Session, breaches: list[Breach], at: datetime) -> Replies:
    """Each breach to its assignee (every staff member when nobody has it) and the admins: one
    message per person a batch, naming each of their requests, so a backlog found at once (the
    first run after an import or an outage) is a digest, not hundreds of messages each."""
    staff = [u for u in staff_members(session) if u.role == Role.STAFF]
    admins = list(session.scalars(select(User).where(User.role == Role.ADMIN)))
    assignees = users_by_id(session, {b.request.assignee_id for b in breaches})
    heard: dict[int, tuple[User, list[Breach]]] = {}
    for breach in breaches:
        assignee = assignees.get(breach.request.assignee_id or 0)
        for user in ([assignee] if assignee is not None else staff) + admins:
            if user.telegram_id is None or not user.reachable:
                continue
            entry = heard.setdefault(user.telegram_id, (user, []))
            if not entry[1] or entry[1][-1] is not breach:
                entry[1].append(breach)
    # One notice per person and batch: the key names the batch's first request and the moment.
    replies = Replies.for_job(session, f"escalate:{breaches[0].request.id}:{at.isoformat()}")
    lines: dict[tuple[int, str], str] = {}  # a breach's line is the same for everyone
    for chat_id, (user, theirs) in heard.items():
        lang = user.language
        if len(theirs) == 1:
            text = _overdue(theirs[0], assignees, lang, "sla.overdue")
        else:
            text = _digest(theirs, assignees, lang, lines)
        only = theirs[0].request.id if len(theirs) == 1 else None
        replies.message(chat_id, text, user_id=user.id, request_id=only)
    return replies


def _overdue(breach: Breach, assignees: Mapping[int, User], lang: str, key: str) -> str:
    request = breach.request
    assignee = assignees.get(request.assignee_id or 0)
    return t(
        key,
        lang,
        id=request.id,
        title=request.title,
        late=duration(breach.late, lang),
        location=request.location,
        assignee=name_of(assignee, lang) if assignee else t("nobody", lang),
        before=priority_text(breach.before, lang),
        after=priority_text(breach.after, lang),
    )


# Telegram takes 4,096 characters; the markup counts here, so this leaves room for the tail.
DIGEST_LIMIT = 3800


def _digest(
    breaches: list[Breach],
    assignees: Mapping[int, User],
    lang: str,
    lines: dict[tuple[int, str], str],
) -> str:
    """The most overdue first, as many as fit; the rest counted, pointing at /queue."""
    ordered = sorted(breaches, key=lambda b: b.late, reverse=True)
    text = str(t("sla.overdue_many", lang, count=len(ordered)))
    shown = 0
    for breach in ordered:
        key = (breach.request.id, lang)
        if key not in lines:
            lines[key] = "\n" + str(_overdue(breach, assignees, lang, "sla.overdue_line"))
        line = lines[key]
        if len(text) + len(line) > DIGEST_LIMIT:
            break
        text, shown = text + line, shown + 1
    if shown < len(ordered):
        text += "\n" + str(t("sla.overdue_more", lang, more=len(ordered) - shown))
    return text
