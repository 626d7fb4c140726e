"""Building and running the bot: factories only, nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import ExceptionTypeFilter
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import MemoryStorage, SimpleEventIsolation
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import BotCommand, ErrorEvent
from aiohttp import web

from bot.enqueue import BrokerUnavailable, CommandQueue
from bot.flood import WaitOutFloodLimits
from bot.middlewares import LogContext
from bot.routers import feature_routers
from core.logging import configure_logging, get_logger
from core.observability import init_sentry
from core.settings import Settings
from core.texts import LANGUAGES, t

log = get_logger(__name__)

# Webhook mode gives up enqueueing before Telegram's own ~60 s webhook timeout.
WEBHOOK_ENQUEUE_DEADLINE_S = 20.0


def create_bot(settings: Settings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_url))
    session.middleware(WaitOutFloodLimits())
    return Bot(settings.token, session=session, default=DefaultBotProperties(parse_mode="HTML"))


def create_storage(settings: Settings) -> BaseStorage:
    if settings.redis_url:
        # Dialog state survives a bot restart mid-dialog. Destinies in the key: the dialog
        # keeps per-user memory (recent locations) beside the dialog state.
        return RedisStorage.from_url(
            settings.redis_url, key_builder=DefaultKeyBuilder(with_destiny=True)
        )
    return MemoryStorage()


def create_dispatcher(settings: Settings, commands: CommandQueue) -> Dispatcher:
    storage = create_storage(settings)
    # Webhook updates of one user may arrive at once: one at a time per user keeps a double
    # Submit or an album's items from racing on the same dialog state.
    isolation: BaseEventIsolation = (
        storage.create_isolation() if isinstance(storage, RedisStorage) else SimpleEventIsolation()
    )
    dp = Dispatcher(storage=storage, events_isolation=isolation, commands=commands)
    dp.update.outer_middleware(LogContext())
    dp.include_routers(*feature_routers())
    # A broker outage must fail the update (webhook: 5xx, so Telegram redelivers it), never
    # count as handled: the error handler is for everything else.
    dp.errors.register(_on_error, ~ExceptionTypeFilter(BrokerUnavailable))
    return dp


async def _on_error(event: ErrorEvent, bot: Bot) -> bool:
    # Logged with the update's context; the user gets a short apology, never a traceback.
    log.error("update.failed", exc_info=event.exception)
    message = event.update.message
    if message is not None:
        language = message.from_user.language_code if message.from_user else None
        await bot.send_message(message.chat.id, t("busy", language))
    return True


async def _set_commands(bot: Bot) -> None:
    from aiogram.types import BotCommandScopeDefault

    for language in LANGUAGES:
        await bot.set_my_commands(
            [
                BotCommand(command=name, description=t(f"cmd.{name}", language))
                for name in ("new", "my", "queue", "cancel", "start", "help")
            ],
            scope=BotCommandScopeDefault(),
            language_code=None if language == "en" else language,
        )


async def run_polling(settings: Settings) -> None:
    commands = CommandQueue(settings.broker_url)
    bot = create_bot(settings)
    dp = create_dispatcher(settings, commands)
    try:
        await bot.delete_webhook(drop_pending_updates=False)
        await _set_commands(bot)
        log.info("bot.polling", api=settings.api_url)
        # Updates are handled one by one: the offset moves past an update only after its
        # command is in the broker, so a broker outage holds the updates at Telegram.
        await dp.start_polling(bot, handle_as_tasks=False, handle_signals=True)
    finally:
        await bot.session.close()
        commands.close()


async def run_webhook(settings: Settings) -> None:
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application

    assert settings.webhook_url is not None
    commands = CommandQueue(settings.broker_url, give_up_after_s=WEBHOOK_ENQUEUE_DEADLINE_S)
    bot = create_bot(settings)
    dp = create_dispatcher(settings, commands)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    path = urlsplit(str(settings.webhook_url)).path or "/"

    app = web.Application()
    SimpleRequestHandler(
        dispatcher=dp, bot=bot, secret_token=secret, handle_in_background=False
    ).register(app, path=path)
    setup_application(app, dp, bot=bot)
    app.router.add_get("/healthz", _health)

    await _set_commands(bot)
    await bot.set_webhook(str(settings.webhook_url), secret_token=secret)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
    await site.start()
    log.info("bot.webhook", path=path, port=settings.webhook_port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        commands.close()


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def main(settings: Settings) -> None:
    configure_logging(settings.log_format, settings.log_level)
    from sentry_sdk.integrations.aiohttp import AioHttpIntegration

    init_sentry(settings, [AioHttpIntegration()])
    runner = run_webhook if settings.webhook_url else run_polling
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner(settings))
