"""Dead-lettered commands: listed by `zavhoz status` and run again by `zavhoz commands replay`.

A replay sends the kept command to its task as the bot would have: the failed runs rolled back
(idempotency key included), so it applies once; replaying twice is harmless for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.clock import now
from core.queues import queue_for
from db.models import DeadLetter
from db.session import session_scope
from workers.app import app


@dataclass(frozen=True)
class Letter:
    id: int
    task_name: str
    error: str
    attempts: int
    created_at: datetime


def waiting(session: Session) -> int:
    """Dead letters not replayed yet."""
    return (
        session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.replayed_at.is_(None))
        )
        or 0
    )


def list_waiting(limit: int = 50) -> list[Letter]:
    with session_scope() as session:
        rows = session.scalars(
            select(DeadLetter)
            .where(DeadLetter.replayed_at.is_(None))
            .order_by(DeadLetter.id)
            .limit(limit)
        )
        return [Letter(r.id, r.task_name, r.error, r.attempts, r.created_at) for r in rows]


def replay(ids: Sequence[int] | None) -> list[int]:
    """Send the waiting letters `ids` (None: all) to their tasks again; returns those sent."""
    with session_scope() as session:
        query = select(DeadLetter).where(DeadLetter.replayed_at.is_(None)).order_by(DeadLetter.id)
        if ids is not None:
            query = query.where(DeadLetter.id.in_(ids))
        letters = [(r.id, r.task_name, r.command) for r in session.scalars(query)]
    sent: list[int] = []
    for letter_id, task_name, command in letters:
        # Sent first, marked after: a crash between replays it once more, which is a no-op.
        app.send_task(task_name, kwargs={"command": command}, queue=queue_for(task_name))
        with session_scope() as session:
            session.execute(
                update(DeadLetter).where(DeadLetter.id == letter_id).values(replayed_at=now())
            )
        sent.append(letter_id)
    return sent
