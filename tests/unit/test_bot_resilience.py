"""Outages are never answered and dropped by the bot; dialog steps apply once per update.

The dialog storage is a fake Redis that can be cut (`server.connected = False`); the bot is the
real dispatcher talking to the sandbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from redis.exceptions import LockError

from bot.app import create_bot, create_dispatcher, webhook_secret
from bot.dialogs.storage import DialogStorage, ShortLivedLocks
from bot.enqueue import BrokerUnavailable
from bot.resilience import is_outage
from bot.routers.new_request import NewRequest
from core.settings import get_settings
from core.texts import t
from tests.support.sandbox_api import SandboxAPI
from tests.unit.test_new_request_dialog import (
    USER,
    Chat,
    Recorder,
    close_bot,
    fast_sandbox,  # noqa: F401 - the same sandbox settings as the dialog tests
    question,
    reach,
)


class Harness:
    def __init__(self, chat: Chat, recorder: Recorder, server: fakeredis.FakeServer) -> None:
        self.chat, self.recorder, self.server = chat, recorder, server

    def cut_redis_for(self, seconds: float) -> None:
        self.server.connected = False
        asyncio.get_running_loop().call_later(seconds, setattr, self.server, "connected", True)


def redis_storage(server: fakeredis.FakeServer) -> DialogStorage:
    redis = fakeredis.aioredis.FakeRedis(server=server)
    return DialogStorage(RedisStorage(redis, key_builder=DefaultKeyBuilder(with_destiny=True)))


@pytest.fixture
async def harness(sandbox: SandboxAPI) -> AsyncIterator[Harness]:
    settings = get_settings()
    bot = create_bot(settings)
    recorder = Recorder()
    server = fakeredis.FakeServer()
    dp = create_dispatcher(settings, recorder, storage=redis_storage(server))
    try:
        yield Harness(Chat(sandbox, bot, dp), recorder, server)
    finally:
        server.connected = True
        await close_bot(bot)
        recorder.close()


def texts(chat: Chat) -> list[str]:
    return [m["source"] for m in chat.messages()]


async def test_a_dialog_storage_outage_is_waited_out_not_answered(harness: Harness) -> None:
    chat = harness.chat
    harness.cut_redis_for(1.5)
    started = time.monotonic()
    await chat.say("/new")  # the dispatcher retries until Redis is back
    assert time.monotonic() - started >= 1.5
    assert texts(chat) == [question("title")]  # asked once, no apology
    assert t("busy") not in texts(chat)
    assert await chat.state() == NewRequest.title.state


async def test_a_step_that_fails_half_way_is_applied_once_when_retried(
    harness: Harness, sandbox: SandboxAPI
) -> None:
    """The old bot saved the step's state, then failed sending the next question; the retried
    update was taken as the answer to that next question."""
    chat = harness.chat
    await reach(chat, "title")
    sandbox.fault("5xx", method="sendMessage", count=1, status=502)
    await chat.say("Leaking tap")
    assert await chat.state() == NewRequest.description.state
    assert (await chat.data())["title"] == "Leaking tap"
    assert texts(chat).count(question("description")) == 1


async def test_a_broker_outage_at_submit_sends_one_command(harness: Harness) -> None:
    chat, recorder = harness.chat, harness.recorder
    await reach(chat, "confirm")
    real_send, failures = recorder.send, [BrokerUnavailable("down")]

    async def flaky(command: Any) -> None:
        if failures:
            raise failures.pop()
        await real_send(command)

    recorder.send = flaky  # type: ignore[method-assign]
    await chat.press(chat.last(), t("new.button.submit"))
    assert len(recorder.created()) == 1
    assert await chat.state() is None


async def test_an_update_replayed_after_a_crash_is_skipped(harness: Harness) -> None:
    """The bot died after applying the update but before Telegram heard: it comes again."""
    chat = harness.chat
    await reach(chat, "title")
    chat.sandbox.send_text(USER, "Leaking tap", **chat.profile)
    (update,) = await chat.bot.get_updates(timeout=0)
    await chat.dp.feed_update(chat.bot, update)
    before = texts(chat)
    await chat.dp.feed_update(chat.bot, update)  # the replay
    assert texts(chat) == before
    assert await chat.state() == NewRequest.description.state
    assert (await chat.data())["title"] == "Leaking tap"
    # The next answer is the description, as the user meant it.
    await chat.bot.get_updates(offset=update.update_id + 1, timeout=0)
    await chat.say("Drips all night")
    assert (await chat.data())["description"] == "Drips all night"


async def test_the_error_handler_never_sees_an_outage(harness: Harness) -> None:
    wrapped = RuntimeError("while handling")
    wrapped.__context__ = ConnectionRefusedError()
    assert is_outage(wrapped)
    assert is_outage(BrokerUnavailable("x"))
    assert not is_outage(ValueError("bad input"))


async def test_a_webhook_gives_up_on_a_long_outage_and_fails_the_request(
    sandbox: SandboxAPI,
) -> None:
    settings = get_settings()
    bot = create_bot(settings)
    recorder = Recorder()
    server = fakeredis.FakeServer()
    dp = create_dispatcher(settings, recorder, storage=redis_storage(server), give_up_after_s=1)
    try:
        sandbox.send_text(USER, "/new", first_name="Ann")
        (update,) = await bot.get_updates(timeout=0)
        server.connected = False
        with pytest.raises(Exception) as raised:
            await dp.feed_update(bot, update)
        assert is_outage(raised.value)  # the webhook answers 5xx: Telegram redelivers
        assert sandbox.messages(USER) == []
    finally:
        server.connected = True
        await close_bot(bot)
        recorder.close()


def key() -> StorageKey:
    return StorageKey(bot_id=1, chat_id=USER, user_id=USER)


async def test_a_dead_bots_lock_stalls_the_next_one_for_seconds_only() -> None:
    redis = fakeredis.aioredis.FakeRedis()
    builder = DefaultKeyBuilder(with_destiny=True)
    # The dead bot took the lock and will never extend or release it.
    await redis.lock(builder.build(key(), "lock"), timeout=1.0).acquire()
    started = time.monotonic()
    async with ShortLivedLocks(redis, builder, ttl_s=1.0).lock(key()):
        pass
    assert time.monotonic() - started < 2.5


async def test_a_live_holder_keeps_its_lock_past_the_ttl() -> None:
    redis = fakeredis.aioredis.FakeRedis()
    builder = DefaultKeyBuilder(with_destiny=True)
    async with ShortLivedLocks(redis, builder, ttl_s=0.3).lock(key()):
        await asyncio.sleep(1.0)  # a slow update: three times the TTL
        other = redis.lock(builder.build(key(), "lock"), timeout=1, blocking_timeout=0.1)
        with pytest.raises(LockError):
            async with other:
                pass


def test_a_webhook_always_has_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.org/hook")
    get_settings.cache_clear()
    derived = webhook_secret(get_settings())
    assert len(derived) >= 32 and derived.isalnum()  # Telegram allows A-Z a-z 0-9 _ -
    monkeypatch.setenv("BOT_TOKEN", "123456:another-token-of-another-bot-00000")
    get_settings.cache_clear()
    assert webhook_secret(get_settings()) != derived  # not guessable without the token
    monkeypatch.setenv("WEBHOOK_SECRET", "chosen-secret")
    get_settings.cache_clear()
    assert webhook_secret(get_settings()) == "chosen-secret"
