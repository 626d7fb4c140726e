"""Interactive commands (queue `interactive`): one task per user action, named as in core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from core import commands as c
from core.menu import main_menu
from core.roles import Role
from core.settings import get_settings
from core.texts import Markup, t
from db.users import upsert_user
from workers import broadcasts
from workers.app import app
from workers.command_runner import Handler, run_command
from workers.desk import handlers as desk
from workers.outbox import Replies
from workers.redelivery import CappedTask

# A lost race on SQLite (stale version) or a dropped connection: the whole transaction rolled
# back, idempotency key included, so running the command again is safe.
RETRY_ON = (StaleDataError, OperationalError)
MAX_RETRIES = 5


def _register_user(session: Session, command: c.RegisterUser, replies: Replies) -> None:
    user = upsert_user(session, command.actor, get_settings().admin_ids)
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


def command_task(model: type[Any], handler: Handler[Any]) -> Task:  # type: ignore[type-arg]
    """Register the task that applies `model` commands with `handler`, under its stable name."""

    def run(command: dict[str, Any]) -> None:
        run_command(model.model_validate(command), handler)

    run.__name__ = run.__qualname__ = model.task_name.rsplit(".", 1)[1]
    task: Task = app.task(  # type: ignore[type-arg]
        name=model.task_name,
        base=CappedTask,
        autoretry_for=RETRY_ON,
        max_retries=MAX_RETRIES,
        retry_backoff=True,
        retry_backoff_max=10,
        retry_jitter=True,
    )(run)
    return task


HANDLERS: dict[type[Any], Callable[..., None]] = {
    c.RegisterUser: _register_user,
    c.CreateRequest: desk.create_request,
    c.ShowMyRequests: desk.show_my_requests,
    c.ShowQueue: desk.show_queue,
    c.ShowRequest: desk.show_request,
    c.TransitionRequest: desk.transition_request,
    c.ShowAssignees: desk.show_assignees,
    c.AddComment: desk.add_comment,
    c.ChangePriority: desk.change_priority,
    c.RateRequest: desk.rate_request,
    c.SetRole: desk.set_role,
    c.ListStaff: desk.list_staff,
    c.StartBroadcast: broadcasts.start_broadcast,
    c.ConfirmBroadcast: broadcasts.confirm_broadcast,
    c.CancelBroadcast: broadcasts.cancel_broadcast,
}

TASKS = {model.task_name: command_task(model, handler) for model, handler in HANDLERS.items()}
register_user = TASKS[c.RegisterUser.task_name]
