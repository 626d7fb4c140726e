"""Maintenance (queue `maintenance`)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select

from db.models import Broadcast, Outbox
from db.session import session_scope
from workers import broadcasts, outbox
from workers.app import app
from workers.redelivery import CappedTask

RELAY_BATCH = 500
# Well inside the task's soft time limit: what is left is sent by the next run.
RELAY_BUDGET_S = 15.0
# A drain slice beats at least this often; longer silence means its worker died.
DRAIN_SILENCE = timedelta(seconds=2 * broadcasts.DRAIN_SLICE_S + 30)


@app.task(name="maintenance.relay_outbox", base=CappedTask)
def relay_outbox() -> dict[str, int]:
    """Send rows left pending (a worker died between commit and send, or a retry is due), and
    restart broadcasts whose drains stopped. Safe to run twice at once: rows and broadcasts
    are claimed with SKIP LOCKED."""
    now = outbox.now()
    with session_scope() as session:
        released = outbox.release_expired_leases(session)
        ids = list(
            session.scalars(
                select(Outbox.id)
                .where(
                    Outbox.state == outbox.PENDING,
                    Outbox.next_attempt_at <= now,
                    Outbox.batch_id.is_(None),  # broadcasts drain in their own tasks
                )
                .order_by(Outbox.next_attempt_at)
                .limit(RELAY_BATCH)
            )
        )
        stalled = list(
            session.scalars(
                select(Broadcast)
                .where(
                    Broadcast.state == "sending",
                    or_(
                        Broadcast.heartbeat_at.is_(None),
                        Broadcast.heartbeat_at < now - DRAIN_SILENCE,
                    ),
                )
                .with_for_update(skip_locked=True)
            )
        )
        for broadcast in stalled:
            broadcast.heartbeat_at = now
        restart = [b.id for b in stalled]
    for broadcast_id in restart:
        broadcasts.start_draining(broadcast_id)
    counts = outbox.deliver(ids, budget_s=RELAY_BUDGET_S).counts
    if restart:
        counts["broadcasts_restarted"] = len(restart)
    if released:
        counts["leases_released"] = released
    return counts
