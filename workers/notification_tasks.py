"""Outbox delivery and broadcasts (queue `notifications`)."""

from __future__ import annotations

from datetime import timedelta

from workers import broadcasts, outbox
from workers.app import MAX_PARKED_DELAY_S, app
from workers.redelivery import CappedTask


@app.task(name="notifications.deliver", base=CappedTask)
def deliver(ids: list[int]) -> dict[str, int]:
    report = outbox.deliver(ids)
    schedule_retries(report)
    return report.counts


def schedule_retries(report: outbox.Report) -> None:
    """Retry rows when they are due (429's retry_after, or backoff). Only short waits are
    parked on the broker; rows due later are sent by the relay, which runs every 30 s."""
    soon = outbox.now() + timedelta(seconds=MAX_PARKED_DELAY_S)
    due_soon = {i: at for i, at in report.retry_at.items() if outbox.as_utc(at) <= soon}
    if due_soon:
        deliver.apply_async(args=(sorted(due_soon),), eta=max(due_soon.values()))


@app.task(name="notifications.drain", base=CappedTask)
def drain(broadcast_id: int) -> int:
    """One slice of draining a broadcast, then a successor (at once, or when rows are due)."""
    handled, again_at = broadcasts.drain_slice(broadcast_id)
    if again_at is not None:
        # A long wait (a 429's retry_after) is taken in steps: never parked past the cap.
        latest = outbox.now() + timedelta(seconds=MAX_PARKED_DELAY_S)
        drain.apply_async(args=(broadcast_id,), eta=min(outbox.as_utc(again_at), latest))
    return handled


@app.task(name="notifications.broadcast_progress", base=CappedTask)
def broadcast_progress(broadcast_id: int) -> None:
    if broadcasts.report_progress(broadcast_id):
        broadcast_progress.apply_async(args=(broadcast_id,), countdown=broadcasts.PROGRESS_EVERY_S)
