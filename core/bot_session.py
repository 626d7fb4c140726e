"""The HTTP session of every Bot API client: the bot's and the workers'."""

from __future__ import annotations

from typing import Any, ClassVar

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType


class BotSession(AiohttpSession):
    """aiogram reads each answer through `Response[<the method's result type>]`, a pydantic
    generic model parametrized on every call, which pydantic caches only weakly: once a garbage
    collection had run between two calls (a busy process collects often), the class was built
    again, ~1.9 ms instead of ~0.02 ms a call (bench/response_models.py; py-spy put it at 8 %
    of the bot's CPU under load). Each result type's class is kept here, so the cache holds."""

    _kept: ClassVar[dict[Any, type[Any]]] = {}

    def check_response(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        status_code: int,
        content: str,
    ) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self._kept:
            self._kept[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)


def bot_session(api_url: str, **options: Any) -> BotSession:
    return BotSession(api=TelegramAPIServer.from_base(api_url), **options)
