"""Retention: what the system keeps only for a while is deleted in bounded batches, and done
requests whose reopen window has passed are closed.

Idempotency keys (a redelivery comes within minutes, Telegram's updates within a day),
outbox rows that are done with (sent, failed, dead), and the files reports made. Each batch is
a short transaction of its own, so a big backlog never holds a long lock; two runs at once
only split the work (each batch deletes rows by id that it has just selected; requests are
closed under SKIP LOCKED row locks with their status checked again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, insert, select, update

from core.clock import now
from core.domain import EventAction, Status
from core.settings import get_settings
from core.states import OutboxState
from db.models import GeneratedFile, Outbox, ProcessedCommand, Request, RequestEvent
from db.session import session_scope

BATCH = 5000
_FINISHED = (OutboxState.SENT, OutboxState.FAILED, OutboxState.DEAD)


@dataclass(frozen=True)
class Rule:
    name: str
    model: Any
    key: Any  # the primary key column
    where: ColumnElement[bool]


def rules(at: datetime) -> list[Rule]:
    settings = get_settings()
    keys_before = at - settings.retention("idempotency")
    outbox_before = at - settings.retention("outbox")
    return [
        Rule(
            "idempotency_keys",
            ProcessedCommand,
            ProcessedCommand.key,
            ProcessedCommand.created_at < keys_before,
        ),
        Rule(
            "outbox",
            Outbox,
            Outbox.id,
            (Outbox.state.in_(_FINISHED)) & (Outbox.created_at < outbox_before),
        ),
        Rule(
            "generated_files",
            GeneratedFile,
            GeneratedFile.id,
            GeneratedFile.created_at < outbox_before,
        ),
    ]


def prune(*, at: datetime | None = None, budget_s: float | None = None) -> dict[str, int]:
    """Delete what is past its retention; returns how many rows of each kind."""
    import time

    at = at or now()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    counts: dict[str, int] = {}
    closed = close_done(at, deadline)
    if closed:
        counts["requests_closed"] = closed
    for rule in rules(at):
        while deadline is None or time.monotonic() < deadline:
            with session_scope() as session:
                ids = list(session.scalars(select(rule.key).where(rule.where).limit(BATCH)))
                if ids:
                    session.execute(delete(rule.model).where(rule.key.in_(ids)))
            if ids:
                counts[rule.name] = counts.get(rule.name, 0) + len(ids)
            if len(ids) < BATCH:
                break
    backups = _old_backups(at)
    if backups:
        counts["backups"] = backups
    return counts


CLOSE_BATCH = 1000


def close_done(at: datetime, deadline: float | None = None) -> int:
    """Done requests not reopened within REOPEN_WINDOW_DAYS become closed, each with a history
    event. Open requests are few and done ones within the window fewer: the status index finds
    them without reading the closed past."""
    import time

    before = at - timedelta(days=get_settings().reopen_window_days)
    closed = 0
    while deadline is None or time.monotonic() < deadline:
        with session_scope() as session:
            ids = list(
                session.scalars(
                    # No order: any batch will do, and the status index stops at the limit.
                    select(Request.id)
                    .where(Request.status == Status.DONE, Request.done_at < before)
                    .limit(CLOSE_BATCH)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                session.execute(
                    update(Request)
                    .where(Request.id.in_(ids))
                    .values(status=Status.CLOSED, closed_at=at, version=Request.version + 1)
                    .execution_options(synchronize_session=False)
                )
                session.execute(
                    insert(RequestEvent),
                    [
                        {
                            "request_id": i,
                            "action": EventAction.CLOSE,
                            "from_status": Status.DONE,
                            "to_status": Status.CLOSED,
                            "created_at": at,
                        }
                        for i in ids
                    ],
                )
        closed += len(ids)
        if len(ids) < CLOSE_BATCH:
            break
    return closed


def _old_backups(at: datetime) -> int:
    """The orphans job's backups (VAR_DIR/backups/*.jsonl) past RETENTION_BACKUPS."""
    settings = get_settings()
    folder = settings.var_dir / "backups"
    before = (at - settings.retention("backups")).timestamp()
    removed = 0
    for path in folder.glob("orphans-*.jsonl") if folder.is_dir() else ():
        if path.stat().st_mtime < before:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
