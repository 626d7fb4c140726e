"""Middlewares: per-update logging context, and the command envelope handed to handlers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware, Router
from aiogram.types import CallbackQuery, Message, TelegramObject, Update
from aiogram.types.update import UpdateTypeLookupError

from bot.actors import Envelope

_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}")
_CALLBACK = re.compile(r"[A-Za-z_][\w-]{0,31}")


def update_kind(update: Update) -> str:
    try:
        return update.event_type
    except UpdateTypeLookupError:  # a type newer than this aiogram
        return "unknown"


def sentry_tags(update: Update) -> dict[str, str]:
    """What an error report may say of the update: its type and the command word or button
    kind (our own vocabulary), never the text around it."""
    tags = {"update_type": update_kind(update)}
    if update.message is not None and update.message.text:
        word = update.message.text.split(maxsplit=1)[0].split("@", 1)[0]
        tags["command"] = word if _COMMAND.fullmatch(word) else "text"
    elif update.callback_query is not None and update.callback_query.data:
        kind = update.callback_query.data.split(":", 1)[0]
        tags["command"] = f"button:{kind}" if _CALLBACK.fullmatch(kind) else "button"
    return tags


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
