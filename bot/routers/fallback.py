"""Anything no feature router took: a hint instead of silence."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Message

from core.texts import t


async def unknown(message: Message) -> None:
    language = message.from_user.language_code if message.from_user else None
    await message.answer(t("unknown", language))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(unknown)
    return router
