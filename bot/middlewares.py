"""Per-update logging context: every log line of an update carries its ids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update


class LogContext(BaseMiddleware):
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
