"""An update the bot could not finish because of an outage is not handled: it is tried again.

An error the update did not cause (the broker, the dialog storage or Telegram unreachable) must
never be answered and dropped: polling retries the update in place with backoff for as long as
it takes (the offset does not move past it); a webhook retries until a deadline, then fails
with 5xx so Telegram delivers it again. Only errors of the update itself reach the error
handler, which apologises and counts the update as handled.

Retrying a whole update is safe because the dialog state it changes is written only when the
update is finished (see bot.dialogs.storage) and its command carries the update's idempotency
key.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kombu.exceptions
import redis.exceptions
from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import ErrorEvent, Update
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_exponential_jitter,
)

from bot.enqueue import BrokerUnavailable, log_retry
from bot.middlewares import update_kind
from core.errors import cause_chain
from core.logging import get_logger
from core.metrics import metrics

log = get_logger(__name__)

_OUTAGES: tuple[type[BaseException], ...] = (
    BrokerUnavailable,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica during failover
    kombu.exceptions.OperationalError,
    TelegramNetworkError,
    TelegramServerError,
    TelegramRetryAfter,  # a long flood wait on the bot's own reply
    ClientDecodeError,  # an HTML error page from a proxy in front of the Bot API
    ConnectionError,
    TimeoutError,
)


def is_outage(error: BaseException) -> bool:
    """An error the update did not cause, anywhere in its chain of causes."""
    return any(isinstance(cause, _OUTAGES) for cause in cause_chain(error))


def caused_by_the_update(event: ErrorEvent) -> bool:
    """Filter of the error handler: outages are not its business."""
    return not is_outage(event.exception)


class ResilientDispatcher(Dispatcher):
    """Feeds an update again while an outage lasts (polling: forever; webhook: until
    `give_up_after_s`, then the error fails the webhook request)."""

    def __init__(
        self, *, give_up_after_s: float | None = None, max_backoff_s: float = 10.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.give_up_after_s = give_up_after_s
        self.max_backoff_s = max_backoff_s

    async def feed_update(self, bot: Bot, update: Update, **kwargs: Any) -> Any:
        metrics().updates.labels(update_kind(update)).inc()
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_outage),
            wait=wait_exponential_jitter(multiplier=0.5, max=self.max_backoff_s, jitter=0.5),
            stop=stop_never
            if self.give_up_after_s is None
            else stop_after_delay(self.give_up_after_s),
            before_sleep=log_retry("update.retry"),
            sleep=asyncio.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await super().feed_update(bot, update, **kwargs)
        raise AssertionError("unreachable: tenacity returns or raises")
