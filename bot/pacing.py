"""The bot's own sends count against the same Telegram limits as the workers' (issue: a broadcast
drew a 429 when a dialog reply fell into its busiest second).

Every message the bot sends or edits takes a slot from the shared limiter first (Redis: the very
Lua script the workers use; embedded defaults: this process's own limiter), and a 429 it meets
pauses every worker too. The limiter being unreachable never costs a user their reply: the send
goes ahead unpaced and says so in the log.

The bot handles updates one at a time (the offset moves only past what is in the broker), so a
reply waiting for its chat's slot holds up everybody's updates behind it: a user sending 30
unknown texts made everyone else wait 27 s for their replies. Courtesy replies (`courtesy()`:
"I don't understand", "too fast") are sent only when their chat has a slot free at once, and
skipped otherwise: a flood then costs the bot a Redis call an update, nobody a wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from core.logging import get_logger
from core.ratelimit import RateLimiter

if TYPE_CHECKING:
    from aiogram import Bot

log = get_logger(__name__)

# Calls that Telegram counts as messages: new ones and edits.
_COUNTED = ("Send", "Edit", "Copy", "Forward")
# The longest a reply waits for a slot; past it, it goes anyway (a 429 is then waited out).
MAX_WAIT_S = 10.0


_COURTESY: ContextVar[bool] = ContextVar("courtesy", default=False)


class CourtesySkipped(Exception):
    """A courtesy reply whose chat had no free slot: not sent."""


@contextmanager
def courtesy() -> Iterator[None]:
    """Sends in this block are courtesy replies: skipped, silently, when their chat is at its
    pace (see the module's docstring)."""
    token = _COURTESY.set(True)
    try:
        yield
    except CourtesySkipped:
        pass
    finally:
        _COURTESY.reset(token)


class SharedRateLimit(BaseRequestMiddleware):
    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        chat_id: Any = getattr(method, "chat_id", None)
        if isinstance(chat_id, int) and type(method).__name__.startswith(_COUNTED):
            if _COURTESY.get():
                await self._free_slot_or_skip(chat_id)
            else:
                await self._slot(chat_id)
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter as error:
            # Telegram throttles the whole bot: the workers pause too.
            await asyncio.to_thread(self.limiter.pause, float(error.retry_after))
            raise

    async def _free_slot_or_skip(self, chat_id: int) -> None:
        try:
            wait = await asyncio.to_thread(self.limiter.try_acquire, chat_id)
        except Exception as error:  # Redis down: as for any reply, it goes unpaced
            log.warning("ratelimit.unavailable", error=type(error).__name__)
            return
        if wait > 0:
            log.info("bot.courtesy_skipped", chat_id=chat_id, wait_s=round(wait, 2))
            raise CourtesySkipped

    async def _slot(self, chat_id: int) -> None:
        deadline = time.monotonic() + MAX_WAIT_S
        while True:
            try:
                wait = await asyncio.to_thread(self.limiter.try_acquire, chat_id)
            except Exception as error:  # Redis down: answer the user anyway
                log.warning("ratelimit.unavailable", error=type(error).__name__)
                return
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                log.warning("ratelimit.gave_up_waiting", chat_id=chat_id, wait_s=round(wait, 2))
                return
            await asyncio.sleep(wait)
