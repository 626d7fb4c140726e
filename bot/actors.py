"""Building command envelopes from Telegram updates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aiogram.types import CallbackQuery, Chat, Message, User

from bot.enqueue import CommandQueue
from bot.quotas import Quotas
from core.clock import now
from core.commands import Actor, Command, idempotency_key

C = TypeVar("C", bound=Command)


def language_of(event: Message | CallbackQuery) -> str | None:
    """The sender's Telegram language, which picks the texts of the bot's own replies."""
    return event.from_user.language_code if event.from_user else None


@dataclass(frozen=True)
class Envelope:
    """What every command of one update carries, handed to its handler as `envelope` (see
    `bot.middlewares.Envelopes`): the update's idempotency key and who acts where."""

    key: str
    user: User | None
    chat: Chat | None  # None: a button under a message the bot can no longer see
    commands: CommandQueue | None
    origin: str | None = None  # see core.commands.Command.origin
    quotas: Quotas | None = None  # the user's limits (None: none, as in some tests)
    # When this bot got the update: commands carry it (see core.commands.Command.issued_at).
    received_at: datetime = field(default_factory=now)

    @classmethod
    def of(
        cls,
        update_id: int,
        event: Message | CallbackQuery,
        commands: CommandQueue | None,
        quotas: Quotas | None = None,
    ) -> Envelope:
        if isinstance(event, Message):
            chat: Chat | None = event.chat
            origin = f"m:{event.chat.id}:{event.message_id}"
        else:
            chat = event.message.chat if event.message else None
            origin = f"c:{event.id}"
        return cls(idempotency_key(update_id), event.from_user, chat, commands, origin, quotas)

    @property
    def lang(self) -> str | None:
        """The sender's Telegram language, which picks the texts of the bot's own replies."""
        return self.user.language_code if self.user else None

    @property
    def actor(self) -> Actor:
        """The sender in their chat; ask only once the event is known to have both."""
        if self.user is None or self.chat is None:
            raise LookupError("an update without a sender or a chat has no actor")
        return Actor(
            user_id=self.user.id,
            chat_id=self.chat.id,
            language=self.user.language_code,
            username=self.user.username,
            first_name=self.user.first_name,
            last_name=self.user.last_name,
        )

    def build(self, command: type[C], /, **fields: Any) -> C:
        """`command` of this update by this actor (a ValidationError for bad fields)."""
        return command(
            idempotency_key=self.key,
            actor=self.actor,
            issued_at=self.received_at,
            origin=self.origin,
            **fields,
        )

    async def enqueue(self, command: Command) -> None:
        if self.commands is None:
            raise RuntimeError("no CommandQueue in the dispatcher's data (`commands`)")
        if self.quotas is not None:
            await self.quotas.take(command.actor.user_id, command)  # or TooFast
        await self.commands.send(command)

    async def send(self, command: type[C], /, **fields: Any) -> C:
        """Build `command` of this update by this actor and enqueue it."""
        built = self.build(command, **fields)
        await self.enqueue(built)
        return built
