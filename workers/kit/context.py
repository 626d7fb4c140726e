"""What every desk handler starts from: the actor as the database knows them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.commands import Command
from core.domain import EventAction, Viewer
from core.roles import Role
from core.settings import get_settings
from core.texts import t
from db.models import Attachment, Request, RequestEvent, User
from db.requests import valid_id
from db.users import upsert_user
from workers.outbox import Messages, Replies


def viewer_for(user: User, request: Request) -> Viewer:
    return Viewer(
        role=Role(user.role),
        is_author=request.author_id == user.id,
        is_assignee=request.assignee_id == user.id,
    )


@dataclass
class Ctx:
    session: Session
    replies: Replies
    actor: User
    command: Command

    @classmethod
    def load(cls, session: Session, command: Command, replies: Replies) -> Ctx:
        # Every command refreshes the profile: a user who acts exists and is reachable.
        actor = upsert_user(session, command.actor, get_settings().admin_ids, command.issued_at)
        replies.actor_id = actor.id
        return cls(session, replies, actor, command)

    @property
    def lang(self) -> str:
        return self.actor.language

    @property
    def role(self) -> Role:
        return Role(self.actor.role)

    def viewer(self, request: Request) -> Viewer:
        return viewer_for(self.actor, request)

    def reply(self, key: str, reply_markup: dict[str, Any] | None = None, **values: Any) -> None:
        self.reply_text(t(key, self.lang, **values), reply_markup=reply_markup)

    def reply_text(self, text: str, *, reply_markup: dict[str, Any] | None = None) -> None:
        extra: dict[str, Any] = {"reply_markup": reply_markup} if reply_markup else {}
        self.replies.message(self.command.actor.chat_id, text, user_id=self.actor.id, **extra)

    def show_list(
        self, text: str, keyboard: dict[str, Any] | None, edit_message_id: int | None
    ) -> None:
        """A list, as a new message or in place of the one whose button was pressed."""
        # A forged message id would only make Telegram refuse the edit: answer with a new list.
        if edit_message_id is None or not valid_id(edit_message_id):
            self.reply_text(text, reply_markup=keyboard)
            return
        payload: dict[str, object] = {
            "message_id": edit_message_id,
            "text": text,
            "parse_mode": "HTML",
        }
        if keyboard:  # without one, the edit removes the old buttons
            payload["reply_markup"] = keyboard
        self.replies.send(
            self.command.actor.chat_id, "editMessageText", payload, user_id=self.actor.id
        )

    def tell(
        self, user: User | None, text: str, *, about: Request | None = None, **extra: Any
    ) -> bool:
        """A message to another user, unless they are gone or known to have blocked the bot.
        `about`: the request it concerns, whose history records a failed delivery."""
        if not self._can_tell(user):
            return False
        assert user is not None and user.telegram_id is not None
        request_id = about.id if about is not None else None
        self.replies.message(
            user.telegram_id, text, user_id=user.id, request_id=request_id, **extra
        )
        return True

    def tell_many(
        self,
        users: Iterable[User | None],
        compose: Callable[[str], Messages],
        *,
        about: Request | None = None,
    ) -> int:
        """`tell` for many (every staff member of a place): the messages `compose(language)`
        makes, to each user `tell` would reach, as one row written out per recipient after
        commit (outbox.FAN_OUT); returns how many it goes to."""
        told = [u for u in users if self._can_tell(u)]
        languages = sorted({u.language for u in told if u is not None})
        self.replies.fan_out(
            [u.id for u in told if u is not None],
            {lang: compose(lang) for lang in languages},
            request_id=about.id if about is not None else None,
        )
        return len(told)

    def _can_tell(self, user: User | None) -> bool:
        return (
            user is not None
            and user.telegram_id is not None
            and user.reachable
            and user.id != self.actor.id
        )

    def send_attachments(self, user: User, attachments: list[Attachment]) -> None:
        """Files re-sent by file_id: an album per kind (Telegram does not mix photos and files)."""
        if user.telegram_id is None:
            return
        for method, payload in attachment_messages(attachments):
            self.replies.send(user.telegram_id, method, payload, user_id=user.id)

    def record(
        self,
        request: Request,
        action: EventAction,
        *,
        from_status: str | None = None,
        to_status: str | None = None,
        note: str | None = None,
    ) -> None:
        self.session.add(
            RequestEvent(
                request_id=request.id,
                actor_id=self.actor.id,
                action=action,
                from_status=from_status,
                to_status=to_status,
                note=note,
            )
        )


def attachment_messages(attachments: list[Attachment]) -> Messages:
    """Files to re-send by file_id: an album per kind (Telegram does not mix photos and files)."""
    messages: Messages = []
    for kind, method, field in (
        ("photo", "sendPhoto", "photo"),
        ("document", "sendDocument", "document"),
    ):
        group = [a for a in attachments if a.kind == kind]
        if len(group) == 1:
            messages.append((method, {field: group[0].file_id}))
        elif group:
            media = [{"type": kind, "media": a.file_id} for a in group]
            messages.append(("sendMediaGroup", {"media": media}))
    return messages


def require_admin(ctx: Ctx) -> bool:
    """Admins only: anyone else is told so, and the handler stops."""
    if ctx.role is Role.ADMIN:
        return True
    ctx.reply("refused.not_allowed")
    return False


def require_staff(ctx: Ctx) -> bool:
    """Staff or admins only: anyone else is told so, and the handler stops."""
    if ctx.role in (Role.STAFF, Role.ADMIN):
        return True
    ctx.reply("refused.not_allowed")
    return False
