"""Group chats (and channels): every member reads what the bot says there, so no list, card,
dialog or admin command is answered in one. This router runs first and takes every update
from a non-private chat: a command or a menu button gets one pointer to the private chat,
a button press gets it as an alert, other chatter is left alone. Nothing is enqueued."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.enums import ChatType
from aiogram.types import CallbackQuery, Chat, Message

from bot.actors import language_of
from core.texts import all_translations, t

_MENU_TEXTS = frozenset().union(
    *(all_translations(key) for key in ("menu.new", "menu.my", "menu.queue", "menu.help"))
)


def _from_group(event: Message | CallbackQuery) -> bool:
    if isinstance(event, Message):
        chat: Chat | None = event.chat
    else:
        chat = event.message.chat if event.message else None
    return chat is not None and chat.type != ChatType.PRIVATE


def _addressed_to(message: Message, username: str) -> bool:
    """A command for this bot (`/queue` or `/queue@this_bot`, not `/queue@other_bot`) or a
    menu button's text."""
    text = message.text or message.caption or ""
    if not text.startswith("/"):
        return text in _MENU_TEXTS
    _, _, mention = text.split(maxsplit=1)[0].partition("@")
    return not mention or mention.lower() == username.lower()


async def on_message(message: Message, bot: Bot) -> None:
    username = (await bot.me()).username or ""
    if _addressed_to(message, username):
        await message.reply(t("group.private_only", language_of(message), bot=username))


async def on_callback(callback: CallbackQuery, bot: Bot) -> None:
    username = (await bot.me()).username or ""
    text = t("group.private_only", language_of(callback), bot=username)
    await callback.answer(text, show_alert=True)


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(on_message, _from_group)
    router.callback_query.register(on_callback, _from_group)
    return router
