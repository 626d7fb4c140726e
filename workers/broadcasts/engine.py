"""The broadcast engine: fan-out as bulk outbox rows, drain slices shared by several workers,
and the author's progress message, written through the outbox like every other message."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from celery import Signature, signature
from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import clock
from core.callbacks import BroadcastCb, BroadcastVerb
from core.roles import AUDIENCE_ROLES, Audience, Role
from core.settings import get_settings
from core.states import BroadcastState, OutboxState
from core.texts import escape, t
from db.models import Broadcast, Outbox, User
from db.session import session_scope
from workers import outbox
from workers.kit import button, inline
from workers.outbox import Replies

INSERT_BATCH = 1000
FAN_OUT_TASK = "notifications.fan_out"
# A drain task sends for at most this long, then hands over to a fresh task at the back of the
# queue: other notifications (progress, retries) get a worker between slices even when every
# worker is draining, and a killed worker loses little.
DRAIN_SLICE_S = 5.0
PROGRESS_EVERY_S = 2.0
# A drain slice beats at least this often; longer silence means its worker died.
DRAIN_SILENCE = timedelta(seconds=2 * DRAIN_SLICE_S + 30)


def recipients(audience: Audience) -> Any:
    roles = [role.value for role in Role if role in AUDIENCE_ROLES[audience]]
    return select(User.id, User.telegram_id).where(
        User.role.in_(roles), User.telegram_id.is_not(None), User.reachable.is_(True)
    )


def counts(session: Session, broadcast_id: int) -> dict[str, int]:
    """The broadcast's outbox rows by state."""
    rows = session.execute(
        select(Outbox.state, func.count())
        .where(Outbox.batch_id == broadcast_id)
        .group_by(Outbox.state)
    ).all()
    return {state: count for state, count in rows}


# --- Fan-out and drain ------------------------------------------------------------------------


def _chunks(session: Session, audience: Audience) -> Iterator[list[tuple[int, int]]]:
    result = session.execute(
        recipients(audience).order_by(User.id).execution_options(yield_per=INSERT_BATCH)
    )
    for partition in result.partitions():
        yield [(row[0], row[1]) for row in partition]


def fan_out(session: Session, broadcast: Broadcast) -> int:
    """One multi-row INSERT per INSERT_BATCH recipients; returns how many rows were written."""
    settings = get_settings()
    payload: dict[str, Any] = {"text": escape(broadcast.text), "parse_mode": "HTML"}
    if settings.paid_broadcast:
        payload["allow_paid_broadcast"] = True
    now, total = clock.now(), 0
    for chunk in _chunks(session, Audience(broadcast.audience)):
        session.execute(
            insert(Outbox),
            [
                {
                    "dedupe_key": f"broadcast:{broadcast.id}:{user_id}",
                    "chat_id": chat_id,
                    "user_id": user_id,
                    "method": "sendMessage",
                    "payload": {"chat_id": chat_id, **payload},
                    "state": OutboxState.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "batch_id": broadcast.id,
                }
                for user_id, chat_id in chunk
            ],
        )
        total += len(chunk)
    if session.get_bind().dialect.name == "postgresql":
        # The drains' claims are planned from the table's statistics, which still describe the
        # outbox before these rows (autovacuum comes a minute later): every message would join
        # and sort all of the broadcast's rows (bench/isolation.py: 35-72 ms a message). ANALYZE
        # counts this transaction's own rows; it samples, so it costs the same at any size.
        session.execute(text("ANALYZE outbox"))
    return total


def fan_out_signature(broadcast_id: int) -> Signature:
    """The fan-out of a confirmed broadcast, on the notifications queue: a big audience takes
    seconds to write, which the interactive pool, where the admin's Confirm runs, must not wait."""
    return signature(FAN_OUT_TASK, args=(broadcast_id,))


def fan_out_once(broadcast_id: int) -> bool:
    """Write a sending broadcast's rows, unless they are written already (a redelivered task,
    the relay restarting a stalled broadcast); returns whether its drains should start. One
    transaction with the broadcast locked."""
    with session_scope() as session:
        broadcast = session.scalars(
            select(Broadcast).where(Broadcast.id == broadcast_id).with_for_update()
        ).one_or_none()
        if broadcast is None or broadcast.state != BroadcastState.SENDING:
            return False  # cancelled meanwhile, or gone
        if broadcast.fanned_out_at is None:
            # Recounted: who is reachable now, not at the preview.
            broadcast.total = fan_out(session, broadcast)
            broadcast.fanned_out_at = clock.now()
        broadcast.heartbeat_at = clock.now()
        return True


def drain_signatures(broadcast_id: int) -> list[Signature]:
    """The parallel drains of a broadcast and its progress reporter, to start after commit."""
    drains = [
        signature("notifications.drain", args=(broadcast_id,))
        for _ in range(get_settings().broadcast_parallelism)
    ]
    return [*drains, signature("notifications.broadcast_progress", args=(broadcast_id,))]


# Restarted by one relay run at most: a burst of stalled broadcasts (a whole host lost) is
# restarted over a few runs, not as thousands of tasks at once.
STALLED_PER_RUN = 50


def claim_stalled(session: Session) -> list[int]:
    """Broadcasts still sending whose drains went silent (their worker died), or whose fan-out
    never ran (its task lost): claimed (SKIP LOCKED, heartbeat set) so that one relay restarts
    each, by its fan-out (which writes the rows if need be, then starts the drains); the oldest
    STALLED_PER_RUN."""
    now = clock.now()
    stalled = list(
        session.scalars(
            select(Broadcast)
            .where(
                Broadcast.state == BroadcastState.SENDING,
                or_(
                    Broadcast.heartbeat_at.is_(None),
                    Broadcast.heartbeat_at < now - DRAIN_SILENCE,
                ),
            )
            .order_by(Broadcast.id)
            .limit(STALLED_PER_RUN)
            .with_for_update(skip_locked=True)
        )
    )
    for broadcast in stalled:
        broadcast.heartbeat_at = now
    return [b.id for b in stalled]


def drain_slice(broadcast_id: int, slice_s: float = DRAIN_SLICE_S) -> tuple[int, datetime | None]:
    """Send due rows of the broadcast for up to `slice_s`; several workers do this at once,
    each row claimed by one of them (see outbox.claim).
    Returns (rows handled, when to come back or None when nothing is left)."""
    deadline, handled = time.monotonic() + slice_s, 0
    with session_scope() as session:  # the relay restarts drains whose heartbeat stops
        session.execute(
            update(Broadcast).where(Broadcast.id == broadcast_id).values(heartbeat_at=clock.now())
        )
        # A drainer that died mid-send left its row claimed; once its lease is over, resend.
        outbox.release_expired_leases(session, Outbox.batch_id == broadcast_id)
    while time.monotonic() < deadline:
        row = outbox.claim(Outbox.batch_id == broadcast_id)
        if row is None:
            break
        outbox.send_claimed(row)
        handled += 1
    else:
        return handled, clock.now()  # time is up, not work: continue at once
    with session_scope() as session:
        # Come back for retries, and for rows others are sending: if one of them dies, its
        # row's lease ends then (next_attempt_at) and this chain picks it up.
        later = session.scalar(
            select(func.min(Outbox.next_attempt_at)).where(
                Outbox.batch_id == broadcast_id,
                Outbox.state.in_([OutboxState.PENDING, OutboxState.SENDING]),
            )
        )
    return handled, later


# --- Progress ---------------------------------------------------------------------------------


def _progress_key(broadcast_id: int) -> str:
    return f"broadcast:{broadcast_id}:progress"


def report_progress(broadcast_id: int) -> tuple[bool, list[int]]:
    """Write the author's progress as an outbox row: the first message, then edits of it in
    place. Returns whether the broadcast is still going and the rows to send now."""
    with session_scope() as session:
        broadcast = session.get(Broadcast, broadcast_id)
        if broadcast is None:
            return False, []
        by_state = counts(session, broadcast_id)
        sent = by_state.get(OutboxState.SENT, 0)
        failed = by_state.get(OutboxState.FAILED, 0) + by_state.get(OutboxState.DEAD, 0)
        remaining = by_state.get(OutboxState.PENDING, 0) + by_state.get(OutboxState.SENDING, 0)
        written = broadcast.fanned_out_at is not None
        going = broadcast.state == BroadcastState.SENDING and (remaining > 0 or not written)
        if broadcast.state == BroadcastState.SENDING and remaining == 0 and written:
            broadcast.state, broadcast.finished_at = BroadcastState.DONE, clock.now()
        if broadcast.state == BroadcastState.CANCELLED:
            return False, []  # the cancel command answered with the final numbers
        if broadcast.progress_chat_id is None:
            # Nobody to tell (the author was erased meanwhile): it still ends, or the relay
            # would take it for stalled and restart it for ever.
            return going, []
        if broadcast.progress_message_id is None:
            first = _adopt_progress_message(session, broadcast)
            if first == "wait":
                return True, []  # the first progress message is on its way: come back
            if first == "lost":
                return False, []  # the author cannot be reached: progress is a courtesy
        # The same numbers give the same key: an unchanged message is not written again.
        key = f"{_progress_key(broadcast_id)}:{broadcast.state}:{sent}:{failed}"
        if session.scalar(select(Outbox.id).where(Outbox.dedupe_key.startswith(key + ":"))):
            return going, []
        author = session.get(User, broadcast.author_id) if broadcast.author_id else None
        lang = author.language if author else "en"
        text = t(
            "bc.progress" if going else "bc.done",
            lang,
            id=broadcast.id,
            sent=sent,
            failed=failed,
            remaining=remaining,
            total=broadcast.total,
        )
        payload: dict[str, Any] = {"text": text, "parse_mode": "HTML"}
        if going:
            cancel = BroadcastCb(action=BroadcastVerb.CANCEL, id=broadcast.id).pack()
            payload["reply_markup"] = inline([[button(t("bc.button.cancel", lang), cancel)]])
        replies = Replies.for_job(session, key)
        if broadcast.progress_message_id is None:
            method = "sendMessage"
        else:
            method, payload["message_id"] = "editMessageText", broadcast.progress_message_id
        try:
            with session.begin_nested():
                replies.send(broadcast.progress_chat_id, method, payload)
        except IntegrityError:
            return going, []  # another reporter wrote these very numbers a moment ago
        return going, [row.id for row in replies.rows]


def _adopt_progress_message(session: Session, broadcast: Broadcast) -> str:
    """Take the progress message's id once its first row is sent: "ready" (known, or no first
    message written yet), "wait" (still on its way) or "lost" (it could not be delivered)."""
    first = session.scalars(
        select(Outbox)
        .where(
            Outbox.dedupe_key.startswith(_progress_key(broadcast.id) + ":"),
            Outbox.method == "sendMessage",
        )
        .order_by(Outbox.id)
        .limit(1)
    ).one_or_none()
    if first is None:
        return "ready"
    if first.message_id is not None:
        broadcast.progress_message_id = first.message_id
        return "ready"
    return "lost" if first.state in (OutboxState.FAILED, OutboxState.DEAD) else "wait"
