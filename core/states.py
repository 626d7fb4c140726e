"""The stored states of outbox rows and of broadcasts (db/models.py's CHECK constraints list
the same values; tests/unit/test_vocabularies.py keeps them equal)."""

from __future__ import annotations

from enum import StrEnum


class OutboxState(StrEnum):
    """A message to Telegram: `pending` until claimed, `sending` under a sender's lease, then
    `sent`, `failed` (gave up, or the user is unreachable), `dead` (Telegram refused the
    message itself) or `cancelled` (its broadcast was cancelled)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


class BroadcastState(StrEnum):
    """An admin's broadcast: a `draft` to confirm, `sending`, then `done` or `cancelled`."""

    DRAFT = "draft"
    SENDING = "sending"
    DONE = "done"
    CANCELLED = "cancelled"
