"""Maintenance (queue `maintenance`)."""

from __future__ import annotations

from sqlalchemy import select

from db.models import Outbox
from db.session import session_scope
from workers import outbox
from workers.app import app
from workers.redelivery import CappedTask

RELAY_BATCH = 500


@app.task(name="maintenance.relay_outbox", base=CappedTask)
def relay_outbox() -> dict[str, int]:
    """Send rows left pending (a worker died between commit and send, or a retry is due).

    Safe to run twice at once: each row is claimed with SKIP LOCKED when it is sent.
    """
    with session_scope() as session:
        ids = list(
            session.scalars(
                select(Outbox.id)
                .where(Outbox.state == outbox.PENDING, Outbox.next_attempt_at <= outbox.now())
                .order_by(Outbox.next_attempt_at)
                .limit(RELAY_BATCH)
            )
        )
    return outbox.deliver(ids).counts
