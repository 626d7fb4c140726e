"""Applying a command: one transaction with the idempotency check. What to do after commit
(send replies, hand notices over, start follow-up work) is returned, for the task layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from celery import Signature
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.commands import Command
from db.models import ProcessedCommand
from db.session import session_scope
from workers import outbox
from workers.outbox import Replies

C = TypeVar("C", bound=Command)
Handler = Callable[[Session, C, Replies], None]


@dataclass(frozen=True)
class Outcome:
    applied: bool  # False: applied before (a redelivery), nothing changed
    inline: list[int]  # outbox rows to the actor: sent right after commit, by the same task
    notices: list[int]  # rows to anyone else: handed to notifications.deliver
    after_commit: list[Signature] = field(default_factory=list)


def apply_command(command: C, handler: Handler[C]) -> Outcome:
    """Apply `command` once, in one transaction."""
    structlog.contextvars.bind_contextvars(
        command=command.task_name, idempotency_key=command.idempotency_key
    )
    with session_scope() as session:
        session.add(ProcessedCommand(key=command.idempotency_key, task_name=command.task_name))
        try:
            # Concurrent duplicates block here on the unique key until the first one commits.
            session.flush()
        except IntegrityError:
            session.rollback()
            # Applied before: only send what that run left unsent.
            pending = outbox.pending_ids_for_key(session, command.idempotency_key)
            return Outcome(False, pending, [])
        replies = Replies.for_command(session, command.idempotency_key, command.actor.chat_id)
        handler(session, command, replies)
        session.flush()
        return Outcome(True, replies.inline_ids(), replies.notice_ids(), replies.after_commit)
