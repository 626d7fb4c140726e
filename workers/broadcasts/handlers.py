"""The broadcast commands: start (a preview with the recipient count), confirm, cancel."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import clock
from core import commands as c
from core.callbacks import BroadcastCb, BroadcastVerb
from core.roles import Audience
from core.states import BroadcastState, OutboxState
from core.texts import t
from db.models import Broadcast, Outbox
from workers.broadcasts import engine
from workers.kit import Ctx, button, inline, require_admin
from workers.outbox import Replies


def _audience_text(audience: Audience, lang: str) -> str:
    return t(f"bc.audience.{audience}", lang)


def begin_broadcast(session: Session, command: c.BeginBroadcast, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_admin(ctx):
        return
    choices = [
        button(
            t(f"bc.audience.{a}", ctx.lang),
            BroadcastCb(action=BroadcastVerb.AUDIENCE, arg=a).pack(),
        )
        for a in Audience
    ]
    ctx.reply("bc.ask_audience", reply_markup=inline([choices]))


def start_broadcast(session: Session, command: c.StartBroadcast, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_admin(ctx):
        return
    count = session.scalar(
        select(func.count()).select_from(engine.recipients(command.audience).subquery())
    )
    audience = _audience_text(command.audience, ctx.lang)
    if not count:
        ctx.reply("bc.nobody", audience=audience)
        return
    broadcast = Broadcast(
        author_id=ctx.actor.id,
        audience=command.audience,
        text=command.text,
        state=BroadcastState.DRAFT,
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
                    BroadcastCb(action=BroadcastVerb.CONFIRM, id=broadcast.id).pack(),
                ),
                button(
                    t("bc.button.cancel", ctx.lang),
                    BroadcastCb(action=BroadcastVerb.CANCEL, id=broadcast.id).pack(),
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
    if broadcast.state != BroadcastState.DRAFT:
        ctx.reply("bc.not_draft", id=broadcast.id)
        return
    # The rows are written by a notifications task; until then the relay takes the broadcast
    # for stalled only after the heartbeat's silence (engine.DRAIN_SILENCE), and restarts it.
    broadcast.state, broadcast.heartbeat_at = BroadcastState.SENDING, clock.now()
    replies.after_commit.append(engine.fan_out_signature(broadcast.id))


def cancel_broadcast(session: Session, command: c.CancelBroadcast, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    broadcast = _admin_lock(ctx, command.broadcast_id)
    if broadcast is None:
        return
    if broadcast.state not in (BroadcastState.DRAFT, BroadcastState.SENDING):
        ctx.reply("bc.not_active", id=broadcast.id)
        return
    session.execute(
        update(Outbox)
        .where(Outbox.batch_id == broadcast.id, Outbox.state == OutboxState.PENDING)
        .values(state=OutboxState.CANCELLED)
    )
    broadcast.state, broadcast.finished_at = BroadcastState.CANCELLED, clock.now()
    counts = engine.counts(session, broadcast.id)
    ctx.reply(
        "bc.cancelled",
        id=broadcast.id,
        sent=counts.get(OutboxState.SENT, 0),
        dropped=counts.get(OutboxState.CANCELLED, 0),
        total=broadcast.total,
    )


def _admin_lock(ctx: Ctx, broadcast_id: int) -> Broadcast | None:
    if not require_admin(ctx):
        return None
    broadcast = ctx.session.scalars(
        select(Broadcast).where(Broadcast.id == broadcast_id).with_for_update()
    ).one_or_none()
    if broadcast is None:
        ctx.reply("bc.not_active", id=broadcast_id)
    return broadcast
