"""What a failed command means: an outage to wait out, or a fault of its own to dead-letter.

An outage (the database or Redis unreachable, a lost race that rolled everything back) is not
the command's fault: it is retried with capped backoff for `COMMAND_RETRY_SECONDS`, never
dropped. Anything else is retried a couple of times (a bug may be a race), then kept in
`dead_letters` (`zavhoz commands replay` runs it again) and the user is told.
"""

from __future__ import annotations

from typing import Any

import kombu.exceptions
import redis.exceptions
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError

from core.errors import cause_chain
from core.logging import get_logger
from core.settings import get_settings
from core.texts import t
from db.models import DeadLetter
from db.session import session_scope
from workers import outbox

log = get_logger(__name__)

# The whole transaction rolled back (idempotency key included), so running it again is safe.
_OUTAGES: tuple[type[BaseException], ...] = (
    OperationalError,  # connection refused or lost, server shutting down, SQLite busy
    InterfaceError,
    PoolTimeout,
    StaleDataError,  # a lost optimistic-locking race
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    ConnectionError,
    TimeoutError,
)

OWN_FAULT_ATTEMPTS = 3
_BACKOFF_BASE_S = 1.0


def is_outage(error: BaseException) -> bool:
    """An error the command did not cause, anywhere in its chain of causes."""
    return any(
        isinstance(cause, _OUTAGES)
        or (isinstance(cause, DBAPIError) and cause.connection_invalidated)
        for cause in cause_chain(error)
    )


def retry_delay(retries: int) -> float:
    """Seconds before retry number `retries + 1`: doubling from 1 s, capped."""
    cap = get_settings().command_retry_cap_seconds
    return float(min(cap, _BACKOFF_BASE_S * 2 ** min(retries, 30)))


def outage_retries() -> int:
    """How many retries fill COMMAND_RETRY_SECONDS at the backoff above (a lower bound on the
    time: every attempt also takes its own time)."""
    budget, retries, waited = get_settings().command_retry_seconds, 0, 0.0
    while waited < budget:
        waited += retry_delay(retries)
        retries += 1
    return retries


def should_retry(error: BaseException, retries: int) -> bool:
    if is_outage(error):
        return retries < outage_retries()
    return retries + 1 < OWN_FAULT_ATTEMPTS


def describe(error: BaseException) -> str:
    """The full error, for the dead-letter row (the database holds the user's data anyway)."""
    return f"{type(error).__name__}: {error}"[:2000]


def kind_of(error: BaseException) -> str:
    """The error for a log line: its type and the database's error code, never its message
    (PostgreSQL quotes the offending values: "Key (username)=(...)", "Failing row contains")."""
    code = getattr(getattr(error, "orig", None), "sqlstate", None)
    return type(error).__name__ + (f" [{code}]" if code else "")


def dead_letter(
    task_name: str, command: dict[str, Any], error: BaseException | str, attempts: int
) -> int:
    """Keep the command to replay and tell its user (when the command says who that is).
    Raises when the database is unreachable: the caller retries instead of dropping it."""
    reason = error if isinstance(error, str) else describe(error)
    key = (
        command.get("idempotency_key") if isinstance(command.get("idempotency_key"), str) else None
    )
    actor = command.get("actor")
    actor = actor if isinstance(actor, dict) else {}
    with session_scope() as session:
        letter = DeadLetter(
            task_name=task_name,
            idempotency_key=key,
            command=command,
            error=reason,
            attempts=attempts,
        )
        session.add(letter)
        session.flush()
        replies = outbox.Replies(session, f"dead-letter:{letter.id}")
        chat_id = actor.get("chat_id")
        if isinstance(chat_id, int) and not isinstance(chat_id, bool):
            replies.message(chat_id, t("command.failed", actor.get("language")))
        session.flush()
        letter_id, rows = letter.id, [row.id for row in replies.rows]
    log.error(
        "command.dead_lettered",
        dead_letter_id=letter_id,
        attempts=attempts,
        error=error if isinstance(error, str) else kind_of(error),
    )
    outbox.deliver(rows)
    return letter_id
