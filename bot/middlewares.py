"""Middlewares: per-update logging context, and the command envelope handed to handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Router
from aiogram.types import CallbackQuery, Message, TelegramObject, Update

from bot.actors import Envelope


class LogContext(BaseMiddleware):
    """Every log line of an update carries its ids."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        bound: dict[str, Any] = {"user_id": user.id if user else None}
        if isinstance(event, Update):
            bound.update(update_id=event.update_id, update_type=event.event_type)
        with structlog.contextvars.bound_contextvars(**bound):
            return await handler(event, data)


class Envelopes(BaseMiddleware):
    """Hands a message or button handler `envelope: Envelope`: the update's idempotency key,
    the actor, the language, and `send` to enqueue a command through the dispatcher's
    `commands` (a CommandQueue)."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        update: Update | None = data.get("event_update")
        if update is not None and isinstance(event, Message | CallbackQuery):
            data["envelope"] = Envelope.of(
                update.update_id, event, data.get("commands"), data.get("quotas")
            )
        return await handler(event, data)


def with_envelopes(router: Router) -> Router:
    """Registered on each router that sends commands rather than on the dispatcher: a router
    included in any dispatcher that has `commands` works (as in the bot-restart test)."""
    envelopes = Envelopes()
    router.message.middleware(envelopes)
    router.callback_query.middleware(envelopes)
    return router
