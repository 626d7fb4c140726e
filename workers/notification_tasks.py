"""Outbox delivery and broadcasts (queue `notifications`)."""

from __future__ import annotations

from workers import broadcasts, outbox
from workers.app import app
from workers.redelivery import CappedTask


@app.task(name="notifications.deliver", base=CappedTask)
def deliver(ids: list[int]) -> dict[str, int]:
    report = outbox.deliver(ids)
    schedule_retries(report)
    return report.counts


def schedule_retries(report: outbox.Report) -> None:
    """Retry rows when they are due (429's retry_after, or backoff); the relay is the backstop."""
    if report.retry_at:
        eta = max(report.retry_at.values())
        deliver.apply_async(args=(sorted(report.retry_at),), eta=eta)


@app.task(name="notifications.drain", base=CappedTask)
def drain(broadcast_id: int) -> int:
    """One slice of draining a broadcast, then a successor (at once, or when rows are due)."""
    handled, again_at = broadcasts.drain_slice(broadcast_id)
    if again_at is not None:
        drain.apply_async(args=(broadcast_id,), eta=again_at)
    return handled


@app.task(name="notifications.broadcast_progress", base=CappedTask)
def broadcast_progress(broadcast_id: int) -> None:
    if broadcasts.report_progress(broadcast_id):
        broadcast_progress.apply_async(args=(broadcast_id,), countdown=broadcasts.PROGRESS_EVERY_S)
