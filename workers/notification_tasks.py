"""Outbox delivery (queue `notifications`)."""

from __future__ import annotations

from workers import outbox
from workers.app import app
from workers.redelivery import CappedTask


@app.task(name="notifications.deliver", base=CappedTask)
def deliver(ids: list[int]) -> dict[str, int]:
    return outbox.deliver(ids)
