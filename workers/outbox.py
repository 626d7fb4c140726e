"""The outbox: messages are rows written in the command's transaction and sent after commit.

A row is claimed with FOR UPDATE SKIP LOCKED while it is sent, so the fast path, the
`notifications.deliver` task and the relay never send the same row twice.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.logging import get_logger
from db.models import Outbox, RequestEvent, User
from db.session import session_scope
from workers.pacing import get_limiter
from workers.telegram import get_client, method_for

log = get_logger(__name__)

PENDING, SENT, FAILED, DEAD = "pending", "sent", "failed", "dead"
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Replies:
    """Collects the outbox rows a command writes; dedupe keys derive from the command's key."""

    session: Session
    key: str
    rows: list[Outbox] = field(default_factory=list)

    def send(
        self,
        chat_id: int,
        method: str,
        payload: dict[str, Any],
        *,
        user_id: int | None = None,
        request_id: int | None = None,
    ) -> Outbox:
        row = Outbox(
            dedupe_key=f"{self.key}:{len(self.rows)}",
            chat_id=chat_id,
            user_id=user_id,
            request_id=request_id,
            method=method,
            payload={"chat_id": chat_id, **payload},
            state=PENDING,
            attempts=0,
            next_attempt_at=now(),
        )
        self.session.add(row)
        self.rows.append(row)
        return row

    def message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        request_id: int | None = None,
        **extra: Any,
    ) -> Outbox:
        payload = {"text": text, "parse_mode": "HTML", **extra}
        return self.send(chat_id, "sendMessage", payload, user_id=user_id, request_id=request_id)


def pending_ids_for_key(session: Session, key: str) -> list[int]:
    """Rows a command wrote that are still unsent: a redelivery retries them, nothing more."""
    prefix = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"
    return list(
        session.scalars(
            select(Outbox.id).where(
                Outbox.dedupe_key.like(prefix, escape="\\"), Outbox.state == PENDING
            )
        )
    )


def backoff_delay(attempts: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempts))  # noqa: S311


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    # Rows to try again, with the earliest time they may go.
    retry_at: dict[int, datetime] = field(default_factory=dict)


def deliver(ids: Iterable[int]) -> Report:
    """Send the due rows among `ids`, one short transaction each."""
    report = Report()
    for row_id in ids:
        outcome, retry_at = _deliver_one(row_id)
        report.counts[outcome] = report.counts.get(outcome, 0) + 1
        if retry_at is not None:
            report.retry_at[row_id] = retry_at
    return report


def _deliver_one(row_id: int) -> tuple[str, datetime | None]:
    with session_scope() as session:
        row = session.scalars(
            select(Outbox)
            .where(Outbox.id == row_id, Outbox.state == PENDING, Outbox.next_attempt_at <= now())
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if row is None:
            return "skipped", None  # sent already, not due, or another worker holds it
        outcome = _attempt(session, row)
        return outcome, row.next_attempt_at if outcome == "retry" else None


def _attempt(session: Session, row: Outbox) -> str:
    bound = log.bind(outbox_id=row.id, method=row.method, chat_id=row.chat_id)
    limiter = get_limiter(paid=bool(row.payload.get("allow_paid_broadcast")))
    # Waits for a slot under the global limits (all workers share them) with the row claimed.
    limiter.acquire(row.chat_id)
    row.attempts += 1
    try:
        result = get_client().call(method_for(row.method, row.payload))
    except TelegramRetryAfter as error:
        # Telegram throttles the whole bot: every worker pauses, and this row waits it out.
        limiter.pause(error.retry_after)
        row.next_attempt_at = now() + timedelta(seconds=error.retry_after)
        row.last_error = error.message
        bound.warning("telegram.rate_limited", retry_after=error.retry_after)
        return "retry"
    except (TelegramServerError, TelegramNetworkError) as error:
        row.last_error = f"{type(error).__name__}: {error.message}"
        if row.attempts >= MAX_ATTEMPTS:
            row.state = FAILED
            bound.error("telegram.gave_up", attempts=row.attempts, error=row.last_error)
            return FAILED
        row.next_attempt_at = now() + timedelta(seconds=backoff_delay(row.attempts))
        bound.warning("telegram.transient_error", attempts=row.attempts, error=row.last_error)
        return "retry"
    except TelegramForbiddenError as error:
        # Blocked or deactivated: retrying cannot help, and the user's other rows are moot.
        row.state, row.last_error = FAILED, error.message
        _mark_unreachable(session, row, error.message)
        bound.info("telegram.forbidden", error=error.message)
        return FAILED
    except TelegramBadRequest as error:
        row.state, row.last_error = DEAD, error.message
        bound.error("telegram.bad_request", error=error.message)
        return DEAD
    row.state, row.sent_at, row.last_error = SENT, now(), None
    row.message_id = getattr(result, "message_id", None)
    bound.debug("telegram.sent")
    return SENT


def _mark_unreachable(session: Session, row: Outbox, reason: str) -> None:
    session.execute(update(User).where(User.telegram_id == row.chat_id).values(reachable=False))
    session.execute(
        update(Outbox)
        .where(Outbox.chat_id == row.chat_id, Outbox.state == PENDING)
        .values(state=FAILED, last_error=reason)
    )
    if row.request_id is not None and row.user_id is not None:
        # The request's history shows staff that this news never reached its recipient.
        session.add(
            RequestEvent(request_id=row.request_id, action="undelivered", note=str(row.user_id))
        )
