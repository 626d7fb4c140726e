"""The bot's own calls (dialog questions, button edits) wait out a short flood limit.

Without this a 429 on, say, removing a keyboard would fail the whole update. Long waits are
not absorbed: the error surfaces and the update's error handler answers instead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from core.logging import get_logger

if TYPE_CHECKING:
    from aiogram import Bot

log = get_logger(__name__)

MAX_ATTEMPTS = 3
MAX_WAIT_S = 5


class WaitOutFloodLimits(BaseRequestMiddleware):
    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt == MAX_ATTEMPTS or error.retry_after > MAX_WAIT_S:
                    raise
                log.info(
                    "telegram.flood_wait",
                    method=type(method).__name__,
                    retry_after=error.retry_after,
                )
                await asyncio.sleep(error.retry_after)
        raise AssertionError("unreachable")
