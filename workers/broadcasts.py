"""Broadcasts: an admin's message fanned out as outbox rows in bulk, drained at the limit by
several workers at once, with progress edited into one message and a cancel button."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from aiogram.exceptions import TelegramAPIError
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from core import commands as c
from core.callbacks import BroadcastCb
from core.logging import get_logger
from core.roles import Role
from core.settings import get_settings
from core.texts import escape, t
from db.models import Broadcast, Outbox, User
from db.session import session_scope
from workers import outbox
from workers.desk.context import Ctx
from workers.desk.render import button, inline
from workers.outbox import Replies
from workers.pacing import get_limiter
from workers.telegram import get_client, method_for

log = get_logger(__name__)

INSERT_BATCH = 1000
# A drain task sends for at most this long, then hands over to a fresh task at the back of the
# queue: other notifications (progress, retries) get a worker between slices even when every
# worker is draining, and a killed worker loses little.
DRAIN_SLICE_S = 5.0
PROGRESS_EVERY_S = 2.0
CANCELLED = "cancelled"

_ROLES = {
    "residents": [Role.RESIDENT.value],
    "staff": [Role.STAFF.value, Role.ADMIN.value],
    "everyone": [r.value for r in Role],
}


def _recipients(audience: str) -> Any:
    return select(User.id, User.telegram_id).where(
        User.role.in_(_ROLES[audience]), User.telegram_id.is_not(None), User.reachable.is_(True)
    )


def _audience_text(audience: str, lang: str) -> str:
    return t(f"bc.audience.{audience}", lang)


# --- Commands ---------------------------------------------------------------------------------


def start_broadcast(session: Session, command: c.StartBroadcast, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if ctx.role is not Role.ADMIN:
        ctx.reply("refused.not_allowed")
        return
    count = session.scalar(
        select(func.count()).select_from(_recipients(command.audience).subquery())
    )
    audience = _audience_text(command.audience, ctx.lang)
    if not count:
        ctx.reply("bc.nobody", audience=audience)
        return
    broadcast = Broadcast(
        author_id=ctx.actor.id,
        audience=command.audience,
        text=command.text,
        state="draft",
        total=count,
        progress_chat_id=command.actor.chat_id,
    )
    session.add(broadcast)
    session.flush()
    keyboard = inline(
        [
            [
                button(
                    t("bc.button.confirm", ctx.lang),
                    BroadcastCb(action="confirm", id=broadcast.id).pack(),
                ),
                button(
                    t("bc.button.cancel", ctx.lang),
                    BroadcastCb(action="cancel", id=broadcast.id).pack(),
                ),
            ]
        ]
    )
    ctx.reply(
        "bc.confirm", count=count, audience=audience, text=command.text, reply_markup=keyboard
    )


def confirm_broadcast(session: Session, command: c.ConfirmBroadcast, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    broadcast = _admin_lock(ctx, command.broadcast_id)
    if broadcast is None:
        return
    if broadcast.state != "draft":
        ctx.reply("bc.not_draft", id=broadcast.id)
        return
    broadcast.state = "sending"
    # Recounted: who is reachable now, not at the preview.
    broadcast.total = fan_out(session, broadcast)
    broadcast_id = broadcast.id
    replies.after_commit.append(lambda: start_draining(broadcast_id))


def cancel_broadcast(session: Session, command: c.CancelBroadcast, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    broadcast = _admin_lock(ctx, command.broadcast_id)
    if broadcast is None:
        return
    if broadcast.state not in ("draft", "sending"):
        ctx.reply("bc.not_active", id=broadcast.id)
        return
    session.execute(
        update(Outbox)
        .where(Outbox.batch_id == broadcast.id, Outbox.state == outbox.PENDING)
        .values(state=CANCELLED)
    )
    broadcast.state, broadcast.finished_at = CANCELLED, outbox.now()
    counts = _counts(session, broadcast.id)
    ctx.reply(
        "bc.cancelled",
        id=broadcast.id,
        sent=counts.get(outbox.SENT, 0),
        dropped=counts.get(CANCELLED, 0),
        total=broadcast.total,
    )


def _admin_lock(ctx: Ctx, broadcast_id: int) -> Broadcast | None:
    if ctx.role is not Role.ADMIN:
        ctx.reply("refused.not_allowed")
        return None
    broadcast = ctx.session.scalars(
        select(Broadcast).where(Broadcast.id == broadcast_id).with_for_update()
    ).one_or_none()
    if broadcast is None:
        ctx.reply("bc.not_active", id=broadcast_id)
    return broadcast


# --- Fan-out and drain ------------------------------------------------------------------------


def _chunks(session: Session, audience: str) -> Iterator[list[tuple[int, int]]]:
    result = session.execute(
        _recipients(audience).order_by(User.id).execution_options(yield_per=INSERT_BATCH)
    )
    for partition in result.partitions():
        yield [(row[0], row[1]) for row in partition]


def fan_out(session: Session, broadcast: Broadcast) -> int:
    """One multi-row INSERT per INSERT_BATCH recipients; returns how many rows were written."""
    settings = get_settings()
    payload: dict[str, Any] = {"text": escape(broadcast.text), "parse_mode": "HTML"}
    if settings.paid_broadcast:
        payload["allow_paid_broadcast"] = True
    now, total = outbox.now(), 0
    for chunk in _chunks(session, broadcast.audience):
        session.execute(
            insert(Outbox),
            [
                {
                    "dedupe_key": f"broadcast:{broadcast.id}:{user_id}",
                    "chat_id": chat_id,
                    "user_id": user_id,
                    "method": "sendMessage",
                    "payload": {"chat_id": chat_id, **payload},
                    "state": outbox.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "batch_id": broadcast.id,
                }
                for user_id, chat_id in chunk
            ],
        )
        total += len(chunk)
    return total


def start_draining(broadcast_id: int) -> None:
    from workers.notification_tasks import broadcast_progress, drain

    for _ in range(get_settings().broadcast_parallelism):
        drain.delay(broadcast_id)
    broadcast_progress.delay(broadcast_id)


def drain_slice(broadcast_id: int, slice_s: float = DRAIN_SLICE_S) -> tuple[int, datetime | None]:
    """Send due rows of the broadcast for up to `slice_s`; several workers do this at once,
    each row claimed by one of them (see outbox.claim).
    Returns (rows handled, when to come back or None when nothing is left)."""
    deadline, handled = time.monotonic() + slice_s, 0
    with session_scope() as session:  # the relay restarts drains whose heartbeat stops
        session.execute(
            update(Broadcast).where(Broadcast.id == broadcast_id).values(heartbeat_at=outbox.now())
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
        return handled, outbox.now()  # time is up, not work: continue at once
    with session_scope() as session:
        # Come back for retries, and for rows others are sending: if one of them dies, its
        # row's lease ends then (next_attempt_at) and this chain picks it up.
        later = session.scalar(
            select(func.min(Outbox.next_attempt_at)).where(
                Outbox.batch_id == broadcast_id,
                Outbox.state.in_([outbox.PENDING, outbox.SENDING]),
            )
        )
    return handled, later


def _counts(session: Session, broadcast_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Outbox.state, func.count())
        .where(Outbox.batch_id == broadcast_id)
        .group_by(Outbox.state)
    ).all()
    return {state: count for state, count in rows}


def report_progress(broadcast_id: int) -> bool:
    """Edit the author's progress message; returns True while the broadcast is still going."""
    with session_scope() as session:
        broadcast = session.get(Broadcast, broadcast_id)
        if broadcast is None or broadcast.progress_chat_id is None:
            return False
        counts = _counts(session, broadcast_id)
        author = session.get(User, broadcast.author_id) if broadcast.author_id else None
        lang = author.language if author else "en"
        sent, failed = (
            counts.get(outbox.SENT, 0),
            counts.get(outbox.FAILED, 0) + counts.get(outbox.DEAD, 0),
        )
        remaining = counts.get(outbox.PENDING, 0) + counts.get(outbox.SENDING, 0)
        going = broadcast.state == "sending" and remaining > 0
        if broadcast.state == "sending" and remaining == 0:
            broadcast.state, broadcast.finished_at = "done", outbox.now()
        if broadcast.state == CANCELLED:
            return False  # the cancel command answered with the final numbers
        key = "bc.progress" if going else "bc.done"
        text = t(
            key,
            lang,
            id=broadcast.id,
            sent=sent,
            failed=failed,
            remaining=remaining,
            total=broadcast.total,
        )
        markup = (
            inline(
                [
                    [
                        button(
                            t("bc.button.cancel", lang),
                            BroadcastCb(action="cancel", id=broadcast.id).pack(),
                        )
                    ]
                ]
            )
            if going
            else None
        )
        chat_id = broadcast.progress_chat_id
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text, "parse_mode": "HTML"}
        if markup is not None:
            payload["reply_markup"] = markup
        if broadcast.progress_message_id is not None:
            payload["message_id"] = broadcast.progress_message_id
        get_limiter().acquire(chat_id)
        try:
            if broadcast.progress_message_id is None:
                message = get_client().call(method_for("sendMessage", payload))
                broadcast.progress_message_id = message.message_id
            else:
                get_client().call(method_for("editMessageText", payload))
        except TelegramAPIError as error:
            # Progress is a courtesy: "not modified", a 429 or a blocked author must not stop it.
            log.info("broadcast.progress_not_shown", error=str(error))
        return going
