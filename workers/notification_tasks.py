"""Outbox delivery and broadcasts (queue `notifications`): the task layer over workers.outbox
and workers.broadcasts.engine."""

from __future__ import annotations

from datetime import timedelta

from core import clock
from workers import outbox
from workers.app import app, send_signatures
from workers.broadcasts import engine
from workers.redelivery import CappedTask
from workers.timing import MAX_PARKED_DELAY_S

# Sends are started for this long, then the rest goes to a task of its own: 300 notices
# sharing the bot's 30/s with other senders would otherwise run past the 30 s soft time limit,
# stopped mid-send with a row claimed (found by bench/scheduler_soak.py).
DELIVER_BUDGET_S = 10.0


@app.task(name="notifications.deliver", base=CappedTask)
def deliver(ids: list[int]) -> dict[str, int]:
    report = outbox.deliver(ids, budget_s=DELIVER_BUDGET_S)
    send_signatures([outbox.retry_signature(report)])
    return report.counts


@app.task(name=engine.FAN_OUT_TASK, base=CappedTask)
def fan_out(broadcast_id: int) -> None:
    """A confirmed broadcast's rows, then its drains and progress."""
    if engine.fan_out_once(broadcast_id):
        send_signatures(engine.drain_signatures(broadcast_id))


@app.task(name="notifications.drain", base=CappedTask)
def drain(broadcast_id: int) -> int:
    """One slice of draining a broadcast, then a successor (at once, or when rows are due)."""
    handled, again_at = engine.drain_slice(broadcast_id)
    if again_at is None:
        # Nothing left: the final numbers are shown even if the progress chain was lost with
        # a killed worker (several drains ending at once write them once: same numbers, same key).
        broadcast_progress.delay(broadcast_id)
    else:
        # A long wait (a 429's retry_after) is taken in steps: never parked past the cap.
        latest = clock.now() + timedelta(seconds=MAX_PARKED_DELAY_S)
        drain.apply_async(args=(broadcast_id,), eta=min(clock.as_utc(again_at), latest))
    return handled


@app.task(name="notifications.broadcast_progress", base=CappedTask)
def broadcast_progress(broadcast_id: int) -> None:
    going, rows = engine.report_progress(broadcast_id)
    send_signatures([outbox.retry_signature(outbox.deliver(rows))])
    if going:
        broadcast_progress.apply_async(args=(broadcast_id,), countdown=engine.PROGRESS_EVERY_S)
