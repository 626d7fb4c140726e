"""The bot's own sends take slots from the same limiter as the workers' (Redis: the same keys),
a 429 the bot meets pauses everyone, and a limiter outage never costs a user their reply."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage, SendPhoto

from bot.pacing import SharedRateLimit, courtesy
from core.ratelimit import RateLimits, RedisRateLimiter


class Recorder:
    def __init__(self, waits: list[float] | None = None, broken: bool = False) -> None:
        self.acquired: list[int] = []
        self.paused: list[float] = []
        self.waits, self.broken = waits or [], broken

    def try_acquire(self, chat_id: int) -> float:
        if self.broken:
            raise ConnectionError("redis is down")
        self.acquired.append(chat_id)
        return self.waits.pop(0) if self.waits else 0.0

    def pause(self, seconds: float) -> None:
        self.paused.append(seconds)


async def call(middleware: SharedRateLimit, method: Any, outcome: Any = "ok") -> Any:
    async def make_request(bot: Bot, method: Any) -> Any:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return await middleware(make_request, Bot("1:x"), method)  # type: ignore[arg-type]


async def test_sends_and_edits_take_a_slot_other_calls_do_not() -> None:
    limiter = Recorder(waits=[0.01])  # the first send waits its turn, then goes
    middleware = SharedRateLimit(limiter)  # type: ignore[arg-type]
    await call(middleware, SendMessage(chat_id=5, text="hi"))
    await call(middleware, EditMessageText(chat_id=6, message_id=1, text="x"))
    await call(middleware, SendPhoto(chat_id=7, photo="file-id"))
    await call(middleware, AnswerCallbackQuery(callback_query_id="q"))
    assert limiter.acquired == [5, 5, 6, 7]


async def test_a_429_pauses_every_sender() -> None:
    limiter = Recorder()
    middleware = SharedRateLimit(limiter)  # type: ignore[arg-type]
    error = TelegramRetryAfter(method=SendMessage(chat_id=5, text="x"), message="", retry_after=3)
    with pytest.raises(TelegramRetryAfter):
        await call(middleware, SendMessage(chat_id=5, text="x"), error)
    assert limiter.paused == [3.0]


async def test_an_unreachable_limiter_does_not_stop_the_reply() -> None:
    middleware = SharedRateLimit(Recorder(broken=True))  # type: ignore[arg-type]
    assert await call(middleware, SendMessage(chat_id=5, text="x")) == "ok"


async def test_the_bot_and_the_workers_share_one_budget() -> None:
    server = fakeredis.FakeServer()
    limits = RateLimits(bot_per_second=30, private_per_second=1.0, private_burst=3)
    bot_side = RedisRateLimiter(fakeredis.FakeRedis(server=server), limits, "zavhoz:rl:")
    worker_side = RedisRateLimiter(fakeredis.FakeRedis(server=server), limits, "zavhoz:rl:")
    middleware = SharedRateLimit(bot_side)
    for _ in range(3):  # the bot's replies use the chat's burst...
        await call(middleware, SendMessage(chat_id=42, text="reply"))
    assert worker_side.try_acquire(42) > 0.5  # ...so a worker's notice to it waits its turn
    assert worker_side.try_acquire(43) == 0  # another chat is free


async def test_a_courtesy_reply_goes_only_when_its_chat_has_a_free_slot() -> None:
    """The bot handles updates one by one: a reply waiting for its chat held everybody up (30
    unknown texts from one user: others waited 27 s). Courtesy replies never wait."""
    limiter = Recorder(waits=[0.0, 0.9, 0.9])  # free, then the chat is at its pace
    middleware = SharedRateLimit(limiter)  # type: ignore[arg-type]
    sent: list[str] = []

    async def make_request(bot: Bot, method: Any) -> Any:
        sent.append(method.text)
        return "ok"

    for text in ("first", "second"):
        with courtesy():
            await middleware(make_request, Bot("1:x"), SendMessage(chat_id=5, text=text))  # type: ignore[arg-type]
    assert sent == ["first"]  # the second was skipped at once, not sent after 0.9 s
    # Outside the block a reply waits its turn, as before.
    await middleware(make_request, Bot("1:x"), SendMessage(chat_id=5, text="dialog"))  # type: ignore[arg-type]
    assert sent == ["first", "dialog"]  # after waiting 0.9 s for its slot


async def test_a_courtesy_reply_goes_when_the_limiter_is_unreachable() -> None:
    middleware = SharedRateLimit(Recorder(broken=True))  # type: ignore[arg-type]
    with courtesy():
        assert await call(middleware, SendMessage(chat_id=5, text="x")) == "ok"
