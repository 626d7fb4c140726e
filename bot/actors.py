"""Building command envelopes from Telegram updates."""

from __future__ import annotations

from aiogram.types import CallbackQuery, Chat, Message, Update, User

from core.commands import Actor, idempotency_key


def actor_of(user: User, chat: Chat) -> Actor:
    return Actor(
        user_id=user.id,
        chat_id=chat.id,
        language=user.language_code,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
    )


def language_of(event: Message | CallbackQuery) -> str | None:
    """The sender's Telegram language, which picks the texts of the bot's own replies."""
    return event.from_user.language_code if event.from_user else None


def key_of(update: Update) -> str:
    return idempotency_key(update.update_id)
