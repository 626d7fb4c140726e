"""/start and /help."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message, Update

from bot.actors import actor_of, key_of, language_of
from bot.enqueue import CommandQueue
from core.commands import RegisterUser
from core.texts import all_translations, t


async def start(message: Message, event_update: Update, commands: CommandQueue) -> None:
    if message.from_user is None:
        return
    # The welcome depends on the user's role, which only the worker knows.
    await commands.send(
        RegisterUser(
            idempotency_key=key_of(event_update),
            actor=actor_of(message.from_user, message.chat),
        )
    )


async def help_(message: Message) -> None:
    await message.answer(t("help", language_of(message)))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(help_, F.text.in_(all_translations("menu.help")))
    return router
