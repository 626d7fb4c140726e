"""The Bot API session keeps aiogram's per-result-type response models alive between calls."""

from __future__ import annotations

import gc
import json
import weakref

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import SendChatAction, TelegramMethod
from aiogram.methods.base import Response
from aiogram.types import TelegramObject

from core.bot_session import bot_session


class Pong(TelegramObject):
    """A result type of this test's own: no other code keeps its response model."""

    n: int


class Ping(TelegramMethod[Pong]):
    __returning__ = Pong
    __api_method__ = "ping"


def model_survives_a_collection(session: AiohttpSession) -> bool:
    """Whether `Response[Pong]`, built by an answer's check, is still there after a garbage
    collection (pydantic caches it weakly: gone, the next call builds it again)."""
    bot = Bot("123:abc", session=session)
    answer = session.check_response(bot, Ping(), 200, json.dumps({"ok": True, "result": {"n": 1}}))
    assert isinstance(answer.result, Pong) and answer.result.n == 1
    model = weakref.ref(type(answer))
    del answer
    gc.collect()
    return model() is not None and model() is Response[Pong]


def test_the_response_model_is_built_once_per_result_type() -> None:
    assert not model_survives_a_collection(AiohttpSession())  # what it fixes, as aiogram does
    assert model_survives_a_collection(bot_session("http://127.0.0.1:1"))


def test_answers_are_read_as_before() -> None:
    session = bot_session("http://127.0.0.1:1")
    bot = Bot("123:abc", session=session)
    ok = json.dumps({"ok": True, "result": True})
    assert session.check_response(bot, SendChatAction(chat_id=1, action="typing"), 200, ok).result
