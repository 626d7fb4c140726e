"""Building and running the bot: factories only, nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from urllib.parse import urlsplit

import sentry_sdk
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import BotCommand, ErrorEvent
from aiohttp import web

from bot.dialogs.sqlite_storage import SqliteStorage
from bot.dialogs.storage import ApplyOnce, DialogStorage
from bot.enqueue import CommandQueue
from bot.flood import WaitOutFloodLimits
from bot.middlewares import LogContext, sentry_tags
from bot.pacing import SharedRateLimit
from bot.quotas import TOO_FAST, Quotas, answer_too_fast
from bot.resilience import ResilientDispatcher, caused_by_the_update
from bot.routers import feature_routers
from core.bot_session import bot_session
from core.heap import freeze_startup_heap
from core.logging import configure_logging, get_logger
from core.menu import commands_for
from core.metrics import setup as setup_metrics
from core.observability import init_sentry
from core.pacing import get_limiter
from core.readiness import mark_ready
from core.roles import Role
from core.settings import Settings
from core.texts import LANGUAGES, t

log = get_logger(__name__)

# Webhook mode gives up enqueueing before Telegram's own ~60 s webhook timeout.
WEBHOOK_ENQUEUE_DEADLINE_S = 20.0


def create_bot(settings: Settings) -> Bot:
    session = bot_session(settings.api_url)
    session.middleware(WaitOutFloodLimits())
    # Inside the flood wait: a retried call takes a new slot.
    session.middleware(SharedRateLimit(get_limiter()))
    return Bot(settings.token, session=session, default=DefaultBotProperties(parse_mode="HTML"))


def create_storage(settings: Settings) -> DialogStorage:
    inner: BaseStorage
    if settings.redis_url:
        # Dialog state survives a bot restart mid-dialog. Destinies in the key: the dialog
        # keeps per-user memory (recent locations) beside the dialog state. Bounded waits: a
        # Redis that stopped answering is an outage to retry, not a hang.
        inner = RedisStorage.from_url(
            settings.redis_url,
            connection_kwargs={
                "socket_connect_timeout": 3,
                "socket_timeout": 5,
                "health_check_interval": 10,
            },
            key_builder=DefaultKeyBuilder(with_destiny=True),
        )
    else:
        # Embedded defaults: a file under VAR_DIR, so a restart keeps dialogs and drafts.
        inner = SqliteStorage(settings.var_dir / "dialogs.sqlite3")
    return DialogStorage(inner)


def create_dispatcher(
    settings: Settings,
    commands: CommandQueue,
    *,
    give_up_after_s: float | None = None,
    storage: DialogStorage | None = None,
) -> Dispatcher:
    storage = storage or create_storage(settings)
    # Webhook updates of one user may arrive at once: one at a time per user keeps a double
    # Submit or an album's items from racing on the same dialog state.
    dp = ResilientDispatcher(
        storage=storage,
        events_isolation=storage.create_isolation(),
        give_up_after_s=give_up_after_s,
        commands=commands,
        quotas=Quotas.from_settings(settings),
    )
    dp.update.outer_middleware(LogContext())
    # After aiogram's FSM middleware, so inside the user's lock: dialog writes land once per
    # update, atomically, and a replayed update is skipped.
    dp.update.outer_middleware(ApplyOnce())
    dp.include_routers(*feature_routers())
    # An outage must fail the update (polling retries it, webhook answers 5xx), never count as
    # handled: the error handler is for errors the update caused.
    dp.errors.register(answer_too_fast, TOO_FAST)
    dp.errors.register(_on_error, caused_by_the_update)
    return dp


def webhook_secret(settings: Settings) -> str:
    """WEBHOOK_SECRET, or one derived from the token: every bot instance computes the same
    one, and nobody without the token (who could call the Bot API anyway) can forge it."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value()
    digest = hmac.new(settings.token.encode(), b"zavhoz webhook secret", hashlib.sha256)
    return digest.hexdigest()


async def _on_error(event: ErrorEvent, bot: Bot) -> bool:
    # Logged with the update's context; the user gets a short apology, never a traceback.
    with sentry_sdk.new_scope() as scope:
        for name, value in sentry_tags(event.update).items():
            scope.set_tag(name, value)
        log.error("update.failed", exc_info=event.exception)
    message = event.update.message
    if message is not None:
        language = message.from_user.language_code if message.from_user else None
        await bot.send_message(message.chat.id, t("busy", language))
    return True


async def _set_commands(bot: Bot) -> None:
    """Everyone's "/" menu: the residents' (staff and admins get theirs per chat from the
    workers, when their role is set and at /start)."""
    from aiogram.types import BotCommandScopeDefault

    for language in LANGUAGES:
        await bot.set_my_commands(
            [
                BotCommand(command=name, description=t(f"cmd.{name}", language))
                for name in commands_for(Role.RESIDENT)
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
        freeze_startup_heap()
        mark_ready("bot")
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
    dp = create_dispatcher(settings, commands, give_up_after_s=WEBHOOK_ENQUEUE_DEADLINE_S)
    # Always a secret: without one anybody who finds the URL can post forged updates.
    secret = webhook_secret(settings)
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
    freeze_startup_heap()
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
    setup_metrics(settings, "bot")
    runner = run_webhook if settings.webhook_url else run_polling
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner(settings))
