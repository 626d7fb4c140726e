"""Anything no feature router took: a hint instead of silence."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from bot.actors import language_of
from bot.pacing import courtesy
from core.texts import t


async def unknown(message: Message) -> None:
    with courtesy():  # a flood of chatter is not answered text by text
        await message.answer(t("unknown", language_of(message)))


async def unknown_button(callback: CallbackQuery) -> None:
    # Callback data that no CallbackData filter unpacks (a forged id out of range fails
    # validation there, and aiogram then just skips the handler): answered, so the client
    # stops waiting and the user learns the button does nothing.
    await callback.answer(t("stale", language_of(callback)))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(unknown)
    router.callback_query.register(unknown_button)
    return router
