"""Anything no feature router took: a hint instead of silence."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Message

from bot.actors import language_of
from core.texts import t


async def unknown(message: Message) -> None:
    await message.answer(t("unknown", language_of(message)))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(unknown)
    return router
