"""Outbox delivery (queue `notifications`)."""

from __future__ import annotations

from workers import outbox
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
