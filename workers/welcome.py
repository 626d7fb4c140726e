"""/start: the user's profile refreshed and the main menu for their role (staff and admins:
their "/" menu too)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core import commands as c
from core.menu import chat_command_menu, main_menu
from core.roles import Role
from core.settings import get_settings
from core.texts import Markup, t
from db.users import upsert_user
from workers.outbox import Replies


def register_user(session: Session, command: c.RegisterUser, replies: Replies) -> None:
    user = upsert_user(session, command.actor, get_settings().admin_ids, command.issued_at)
    role = Role(user.role)
    name = command.actor.first_name or command.actor.username or "👋"
    text = t("welcome", user.language, name=name)
    if role is not Role.RESIDENT:
        role_name = t(f"role.{role}", user.language)
        text = Markup(text + "\n" + t("welcome_staff", user.language, role=role_name))
    replies.message(
        command.actor.chat_id,
        text,
        user_id=user.id,
        reply_markup=main_menu(role, user.language),
    )
    if role is not Role.RESIDENT:
        # Their "/" menu too (an admin by ADMIN_IDS has never had it set; a refresh otherwise).
        replies.send(
            command.actor.chat_id,
            *chat_command_menu(role, user.language, command.actor.chat_id),
            user_id=user.id,
        )
