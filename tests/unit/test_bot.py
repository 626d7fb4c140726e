"""The bot process's side: handlers enqueue commands; a down broker holds the update."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot, Dispatcher

from bot.app import create_bot, create_dispatcher
from bot.enqueue import BrokerUnavailable, CommandQueue
from core.commands import Actor, RegisterUser
from core.menu import main_menu
from core.metrics import registry
from core.roles import Role
from core.settings import get_settings
from core.texts import t
from tests.support.sandbox_api import SandboxAPI


def metric(name: str, **labels: str) -> float:
    return registry().get_sample_value(name, labels) or 0.0


async def feed_pending_updates(bot: Bot, dp: Dispatcher) -> int:
    updates = await bot.get_updates(timeout=0)
    for update in updates:
        await dp.feed_update(bot, update)
    if updates:
        await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    return len(updates)


@pytest.fixture
async def bot_and_dp(sandbox: SandboxAPI) -> AsyncIterator[tuple[Bot, Dispatcher]]:
    """The bot's own objects, enqueueing to the in-process worker's memory broker."""
    settings = get_settings()
    bot = create_bot(settings)
    yield bot, create_dispatcher(settings, CommandQueue("memory://"))
    await bot.session.close()


@pytest.mark.usefixtures("db", "inproc_worker")
async def test_start_goes_through_broker_and_worker(
    sandbox: SandboxAPI, bot_and_dp: tuple[Bot, Dispatcher]
) -> None:
    updates = metric("zavhoz_bot_updates_total", type="message")
    enqueued = metric("zavhoz_bot_enqueue_seconds_count")
    sandbox.send_text(2002, "/start", first_name="Bob", language_code="ru")
    assert await feed_pending_updates(*bot_and_dp) == 1
    assert metric("zavhoz_bot_updates_total", type="message") == updates + 1
    assert metric("zavhoz_bot_enqueue_seconds_count") == enqueued + 1
    messages = await asyncio.to_thread(sandbox.wait_messages, 2002, 1, 20)
    assert messages[0]["text"].startswith("Здравствуйте, Bob!")
    assert messages[0]["reply_markup"]["keyboard"] == main_menu(Role.RESIDENT, "ru")["keyboard"]


async def test_help_and_unknown_are_answered_by_the_bot_itself(sandbox: SandboxAPI) -> None:
    settings = get_settings()

    class NoBroker(CommandQueue):
        async def send(self, command: object) -> None:
            raise AssertionError("static replies must not need a worker")

    bot = create_bot(settings)
    dp = create_dispatcher(settings, NoBroker("memory://"))
    try:
        sandbox.send_text(3003, "/help")
        sandbox.send_text(3003, t("menu.help", "en"))
        sandbox.send_text(3003, "what is this?")
        assert await feed_pending_updates(bot, dp) == 3
    finally:
        await bot.session.close()
    texts = [m["text"] for m in sandbox.messages(3003)]
    assert texts[0] == texts[1] and texts[0].startswith("What I can do")
    assert "named by an admin with /grant" in texts[0]  # how one becomes staff
    assert texts[2] == t("unknown", "en")


def _command() -> RegisterUser:
    return RegisterUser(idempotency_key="tg-update:1", actor=Actor(user_id=1, chat_id=1))


async def test_unreachable_broker_is_retried_then_reported() -> None:
    commands = CommandQueue("redis://127.0.0.1:9/0", give_up_after_s=1.0, max_backoff_s=0.2)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await commands.send(_command())
    assert time.monotonic() - started >= 1.0  # it kept trying for the whole deadline
    commands.close()


async def test_polling_mode_retries_until_the_broker_is_back() -> None:
    class Flaky(CommandQueue):
        calls = 0

        def publish(self, command: object) -> None:
            Flaky.calls += 1
            if Flaky.calls < 4:
                raise ConnectionError("broker down")

    commands = Flaky("memory://", max_backoff_s=0.05)
    retries = metric("zavhoz_bot_broker_retries_total")
    await commands.send(_command())
    assert Flaky.calls == 4
    assert metric("zavhoz_bot_broker_retries_total") == retries + 3


@pytest.mark.usefixtures("db", "inproc_worker")
async def test_a_rate_limited_reply_is_retried_after_retry_after(
    sandbox: SandboxAPI, bot_and_dp: tuple[Bot, Dispatcher]
) -> None:
    """No beat, no relay: the worker schedules the retry itself when Telegram says 429."""
    sandbox.send_text(2003, "/start")
    sandbox.fault("429", retry_after=1, count=1)
    await feed_pending_updates(*bot_and_dp)
    messages = await asyncio.to_thread(sandbox.wait_messages, 2003, 1, 20)
    assert len(messages) == 1
    assert sandbox.stats()["rejected_429"] >= 1


async def _enqueued(
    sandbox: SandboxAPI, user_id: int | list[int], texts: tuple[str, ...]
) -> list[object]:
    """What the bot enqueues for these messages of one user, or of each user in turn (nothing
    reaches a broker)."""
    settings = get_settings()
    sent: list[object] = []

    class Recorder(CommandQueue):
        async def send(self, command: object) -> None:
            sent.append(command)

    bot = create_bot(settings)
    dp = create_dispatcher(settings, Recorder("memory://"))
    try:
        users = user_id if isinstance(user_id, list) else [user_id] * len(texts)
        for user, text in zip(users, texts, strict=True):
            sandbox.send_text(user, text)
        assert await feed_pending_updates(bot, dp) == len(texts)
    finally:
        await bot.session.close()
    return sent


async def test_find_enqueues_the_words_or_says_how(sandbox: SandboxAPI) -> None:
    texts = ("/find light  101", "/find", "/find \u200b", "/find " + "x" * 100)
    sent = await _enqueued(sandbox, 3004, texts)
    assert [getattr(s, "query", None) for s in sent] == ["light  101", "x" * 64]
    assert [m["text"] for m in sandbox.messages(3004)] == [t("find.usage", "en")] * 2


async def test_a_request_opens_by_its_number(sandbox: SandboxAPI) -> None:
    sent = await _enqueued(sandbox, 3004, ("#12", "/r 7", " #3 ", "/r abc", "/r 0", "/r"))
    assert [(type(s).__name__, getattr(s, "request_id", None)) for s in sent] == [
        ("ShowRequest", 12),
        ("ShowRequest", 7),
        ("ShowRequest", 3),
    ]
    assert [m["text"] for m in sandbox.messages(3004)] == [t("open.usage", "en")] * 3


async def test_a_user_over_the_command_limit_is_told_when_and_nothing_is_enqueued(
    sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER_LIMIT_COMMANDS", "3 per minute")
    monkeypatch.setenv("ADMIN_IDS", "3007")
    get_settings.cache_clear()
    # One flooding user, one other user, one admin, interleaved, through one bot.
    users = [3005] * 5 + [3006] * 2 + [3007] * 5
    sent = await _enqueued(sandbox, users, tuple(f"/r {n}" for n in range(1, len(users) + 1)))
    by_user = [(s.actor.user_id, s.request_id) for s in sent]  # type: ignore[attr-defined]
    assert [u for u, _ in by_user] == [3005] * 3 + [3006] * 2 + [3007] * 5  # admins exempt
    told = [m["text"] for m in sandbox.messages(3005)]
    assert len(told) == 2 and all(
        text.startswith("Too many commands at once. Please wait ") for text in told
    ), told
    assert sandbox.messages(3006) == sandbox.messages(3007) == []
