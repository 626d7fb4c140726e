"""The period's requests as CSV: one row per request touched in the period (created, moved,
commented, rated), streamed from the database to a file in batches (never all in memory).

Staff are named (they act for the site); residents' identities are not in it.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from core.clock import as_utc
from db.models import Request, RequestEvent, User
from workers.reports.figures import name_from
from workers.reports.periods import Period

HEADER = (
    "id",
    "created",
    "status",
    "priority",
    "location",
    "title",
    "assignee",
    "accepted",
    "done",
    "hours_to_done",
    "rating",
)
BATCH = 2000


def write_csv(session: Session, period: Period, path: Path) -> int:
    """Write the CSV to `path`; returns how many requests it holds."""
    touched = (
        select(RequestEvent.request_id)
        .where(RequestEvent.created_at >= period.start, RequestEvent.created_at < period.end)
        .distinct()
        .scalar_subquery()
    )
    assignee = aliased(User)
    stmt = (
        select(
            Request.id,
            Request.created_at,
            Request.status,
            Request.priority,
            Request.location,
            Request.title,
            assignee.first_name,
            assignee.last_name,
            assignee.username,
            assignee.id.label("assignee_id"),
            assignee.erased_at,
            Request.accepted_at,
            Request.done_at,
            Request.rating,
        )
        .outerjoin(assignee, assignee.id == Request.assignee_id)
        .where(Request.id.in_(touched))
        .order_by(Request.id)
        .execution_options(yield_per=BATCH)
    )
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for row in session.execute(stmt):
            writer.writerow(_row(row, period))
            rows += 1
    return rows


def _row(r: Any, period: Period) -> list[Any]:
    def local(at: datetime | None) -> str:
        return "" if at is None else as_utc(at).astimezone(period.tz).isoformat(timespec="seconds")

    hours = ""
    if r.done_at is not None:
        span = as_utc(r.done_at) - as_utc(r.created_at)
        hours = f"{span.total_seconds() / 3600:.1f}"
    staff = ""
    if r.assignee_id is not None:
        staff = name_from(r.assignee_id, r.first_name, r.last_name, r.username, r.erased_at)
    return [
        r.id,
        local(r.created_at),
        r.status,
        r.priority,
        r.location,
        r.title,
        staff,
        local(r.accepted_at),
        local(r.done_at),
        hours,
        "" if r.rating is None else r.rating,
    ]
