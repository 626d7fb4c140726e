"""Applying a command: one transaction with the idempotency check, then delivery after commit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.commands import Command
from core.logging import get_logger
from db.models import ProcessedCommand
from db.session import session_scope
from workers import outbox
from workers.notification_tasks import schedule_retries
from workers.outbox import Replies

log = get_logger(__name__)

C = TypeVar("C", bound=Command)
Handler = Callable[[Session, C, Replies], None]


def run_command(command: C, handler: Handler[C]) -> bool:
    """Apply `command` once; returns False when it had been applied already (a redelivery)."""
    structlog.contextvars.bind_contextvars(
        command=command.task_name, idempotency_key=command.idempotency_key
    )
    applied, to_send, after_commit = _apply(command, handler)
    log.info("command.applied" if applied else "command.duplicate", replies=len(to_send))
    # Fast path: the reply goes out now; what fails stays pending for retries and the relay.
    schedule_retries(outbox.deliver(to_send))
    for hook in after_commit:
        hook()
    return applied


def _apply(command: C, handler: Handler[C]) -> tuple[bool, list[int], list[Callable[[], object]]]:
    """The transaction; returns whether it applied, the outbox rows to send after commit and
    the work to start then."""
    with session_scope() as session:
        session.add(ProcessedCommand(key=command.idempotency_key, task_name=command.task_name))
        try:
            # Concurrent duplicates block here on the unique key until the first one commits.
            session.flush()
        except IntegrityError:
            session.rollback()
            # Applied before: only retry what that run left unsent.
            return False, outbox.pending_ids_for_key(session, command.idempotency_key), []
        replies = Replies(session, command.idempotency_key)
        handler(session, command, replies)
        session.flush()
        return True, [row.id for row in replies.rows], replies.after_commit
