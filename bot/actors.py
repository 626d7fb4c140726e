"""Building command envelopes from Telegram updates."""

from __future__ import annotations

from aiogram.types import Chat, Update, User

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


def key_of(update: Update) -> str:
    return idempotency_key(update.update_id)
