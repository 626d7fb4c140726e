"""What one user may ask of the bot: new requests, comments and commands per window.

Checked when a command is enqueued (`bot.actors.Envelope.enqueue`): over a limit nothing is
enqueued and the user is told when to try again (`TooFast`, answered by `answer_too_fast`).
Moving windows (the `limits` library) in Redis, shared by every bot process, or in memory on
embedded defaults (one bot process). ADMIN_IDS are exempt. A flood from one user costs others
nothing: it is refused here, before the broker and the workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from aiogram import Bot
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from bot.pacing import courtesy
from core import commands as c
from core.limits import USER_QUOTA_PREFIX
from core.logging import get_logger
from core.settings import Settings
from core.texts import duration, t

log = get_logger(__name__)

# The kind of work -> the command types it counts (every command counts as a command).
KINDS: dict[str, tuple[type[c.Command], ...]] = {
    "new": (c.CreateRequest,),
    "comments": (c.AddComment,),
}


class TooFast(Exception):
    """A user over one of their limits; `wait_s` until it lets them through again."""

    def __init__(self, kind: str, wait_s: float) -> None:
        super().__init__(kind)
        self.kind, self.wait_s = kind, wait_s


@dataclass(frozen=True)
class Quotas:
    limiter: MovingWindowRateLimiter
    limits: dict[str, list[RateLimitItem]]  # kind -> its limits
    exempt: frozenset[int]

    @classmethod
    def from_settings(cls, settings: Settings) -> Quotas:
        storage: Storage
        if settings.redis_url:
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=USER_QUOTA_PREFIX,
            )
        else:
            storage = MemoryStorage()
        limits = {
            "new": settings.user_limit_new,
            "comments": settings.user_limit_comments,
            "commands": settings.user_limit_commands,
        }
        return cls(
            MovingWindowRateLimiter(storage),
            {kind: parse_many(text) for kind, text in limits.items() if text.strip()},
            settings.admin_ids,
        )

    def kinds_of(self, command: c.Command) -> list[str]:
        kinds = [k for k, types in KINDS.items() if isinstance(command, types)]
        return [k for k in [*kinds, "commands"] if k in self.limits]

    async def take(self, user_id: int, command: c.Command) -> None:
        """Count `command` against its user's limits, or raise TooFast (counting nothing)."""
        if user_id in self.exempt:
            return
        kinds = self.kinds_of(command)
        for kind in kinds:
            for item in self.limits[kind]:
                if not await self.limiter.test(item, kind, str(user_id)):
                    stats = await self.limiter.get_window_stats(item, kind, str(user_id))
                    log.info("user.too_fast", kind=kind, limit=str(item))
                    raise TooFast(kind, max(1.0, stats.reset_time - time.time()))
        for kind in kinds:
            for item in self.limits[kind]:
                await self.limiter.hit(item, kind, str(user_id))


async def answer_too_fast(event: ErrorEvent, bot: Bot) -> bool:
    """The user learns which limit and when to try again; their dialog is as it was."""
    error = event.exception
    assert isinstance(error, TooFast)
    message = event.update.message
    callback = event.update.callback_query
    user = message.from_user if message else callback.from_user if callback else None
    lang = user.language_code if user else None
    wait = duration_text(error.wait_s, lang)
    text = t(f"too_fast.{error.kind}", lang, wait=wait)
    if callback is not None:
        await callback.answer(text, show_alert=True)  # not a message: no slot, always answered
    elif message is not None:
        with courtesy():  # told once in a while, not once per refused message
            await bot.send_message(message.chat.id, text)
    return True


def duration_text(seconds: float, lang: str | None) -> str:
    from datetime import timedelta

    return duration(timedelta(seconds=math.ceil(seconds)), lang)


TOO_FAST = ExceptionTypeFilter(TooFast)
