"""/start and /help."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.actors import Envelope, language_of
from bot.middlewares import with_envelopes
from core.commands import RegisterUser
from core.texts import all_translations, t


async def start(message: Message, envelope: Envelope) -> None:
    if message.from_user is None:
        return
    # The welcome depends on the user's role, which only the worker knows.
    await envelope.send(RegisterUser)


async def help_(message: Message) -> None:
    await message.answer(t("help", language_of(message)))


def create_router() -> Router:
    router = with_envelopes(Router(name=__name__))
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(help_, F.text.in_(all_translations("menu.help")))
    return router
