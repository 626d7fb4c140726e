"""Applying a command: one transaction with the idempotency check. What to do after commit
(send replies, hand notices over, start follow-up work) is returned, for the task layer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from celery import Signature
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.commands import Command
from core.logging import get_logger
from db.models import Outbox, ProcessedCommand
from db.session import session_scope
from db.users import StaleCommand
from workers import outbox
from workers.outbox import Replies

log = get_logger(__name__)

C = TypeVar("C", bound=Command)
Handler = Callable[[Session, C, Replies], None]


@dataclass(frozen=True)
class Outcome:
    applied: bool  # False: applied before (a redelivery), nothing changed
    inline: list[int]  # outbox rows to the actor: sent right after commit, by the same task
    notices: list[int]  # rows to anyone else: handed to notifications.deliver
    after_commit: list[Signature] = field(default_factory=list)
    claimed: Outbox | None = None  # the first of `inline`, claimed in the transaction


def fingerprint(command: Command) -> str:
    # When the bot got it is not what it says: an update the bot got twice is one action.
    body = json.dumps(
        command.model_dump(mode="json", exclude={"issued_at"}), sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(body.encode()).hexdigest()


def apply_command(command: C, handler: Handler[C]) -> Outcome:
    """Apply `command` once, in one transaction."""
    structlog.contextvars.bind_contextvars(
        command=command.task_name, idempotency_key=command.idempotency_key
    )
    try:
        return _apply(command, handler)
    except StaleCommand:
        # Issued before its user was erased: nothing of them may come back, not even a reply.
        log.info("command.dropped_after_erasure")
        return Outcome(False, [], [])


def _apply(command: C, handler: Handler[C]) -> Outcome:
    mark = fingerprint(command)
    key = command.idempotency_key
    with session_scope() as session:
        seen = claim_key(session, key, command.task_name, mark)
        if seen is not None and seen != mark:
            # The key was used by another command: update ids numbered again from the start
            # (a restarted Bot API server, or Telegram after a quiet week). A new action.
            log.warning("command.key_reused", previous_fingerprint=seen[:12])
            key = f"{key}#{mark[:16]}"
            seen = claim_key(session, key, command.task_name, mark)
        if seen is not None:
            # Applied before: only send what that run left unsent.
            return Outcome(False, outbox.pending_ids_for_key(session, key), [])
        replies = Replies.for_command(session, key, command.actor.chat_id)
        handler(session, command, replies)
        session.flush()
        claimed = outbox.claim_in_command(session, replies)
        return Outcome(
            True, replies.inline_ids(), replies.notice_ids(), replies.after_commit, claimed
        )


def claim_key(session: Session, key: str, task_name: str, mark: str) -> str | None:
    """Store the key; None when it is new, else the fingerprint stored with it (a row from
    before fingerprints counts as this very command)."""
    try:
        # Concurrent duplicates block here on the unique key until the first one commits.
        with session.begin_nested():
            session.add(ProcessedCommand(key=key, task_name=task_name, fingerprint=mark))
        return None
    except IntegrityError:
        stored = session.get(ProcessedCommand, key)
        return (stored.fingerprint or mark) if stored is not None else mark
