"""Interactive commands (queue `interactive`): one task per user action, named as in core."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.commands import RegisterUser
from core.menu import main_menu
from core.roles import Role
from core.settings import get_settings
from core.texts import t
from db.users import upsert_user
from workers.app import app
from workers.command_runner import run_command
from workers.outbox import Replies
from workers.redelivery import CappedTask


def _register_user(session: Session, command: RegisterUser, replies: Replies) -> None:
    user = upsert_user(session, command.actor, get_settings().admin_ids)
    role = Role(user.role)
    name = command.actor.first_name or command.actor.username or "👋"
    text = t("welcome", user.language, name=name)
    if role is not Role.RESIDENT:
        text += "\n" + t("welcome_staff", user.language, role=t(f"role.{role}", user.language))
    replies.message(
        command.actor.chat_id,
        text,
        user_id=user.id,
        reply_markup=main_menu(role, user.language),
    )


@app.task(name=RegisterUser.task_name, base=CappedTask)
def register_user(command: dict[str, Any]) -> None:
    run_command(RegisterUser.model_validate(command), _register_user)
