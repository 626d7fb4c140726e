"""Interactive commands (queue `interactive`): one task per user action, named as in core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task
from pydantic import ValidationError
from sqlalchemy.orm import Session

from core import commands as c
from core.logging import get_logger
from core.menu import main_menu
from core.roles import Role
from core.settings import get_settings
from core.texts import Markup, t
from db.users import upsert_user
from workers import broadcasts, failures
from workers.app import app
from workers.command_runner import Handler, run_command
from workers.desk import handlers as desk
from workers.outbox import Replies
from workers.redelivery import CappedTask

log = get_logger(__name__)


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


class CommandTask(CappedTask):
    """A command task: outages are retried, never dropped; a command failing for its own
    reasons is dead-lettered (kept to replay) and its user told."""

    def on_poison(self, kwargs: dict[str, Any], deliveries: int) -> None:
        # It kept killing its worker: keep it for a person to look at, as any other fault.
        failures.dead_letter(
            self.name, kwargs.get("command") or {}, "killed its worker repeatedly", deliveries
        )


def command_task(model: type[Any], handler: Handler[Any]) -> Task:  # type: ignore[type-arg]
    """Register the task that applies `model` commands with `handler`, under its stable name."""

    def run(self: Task, command: dict[str, Any]) -> None:  # type: ignore[type-arg]
        try:
            parsed = model.model_validate(command)
        except ValidationError as error:
            # Malformed (an old schema, a forged message): retrying cannot help.
            failures.dead_letter(self.name, command, error, attempts=1)
            return
        try:
            run_command(parsed, handler)
        except Exception as error:
            _retry_or_dead_letter(self, command, error)

    run.__name__ = run.__qualname__ = model.task_name.rsplit(".", 1)[1]
    task: Task = app.task(  # type: ignore[type-arg]
        name=model.task_name, base=CommandTask, bind=True, max_retries=None
    )(run)
    return task


def _retry_or_dead_letter(task: Task, command: dict[str, Any], error: Exception) -> None:  # type: ignore[type-arg]
    retries = task.request.retries
    if failures.should_retry(error, retries):
        delay = failures.retry_delay(retries)
        log.warning(
            "command.retry",
            outage=failures.is_outage(error),
            retries=retries,
            retry_in_s=delay,
            error=failures.kind_of(error),
        )
        raise task.retry(countdown=delay, exc=error)
    try:
        failures.dead_letter(task.name, command, error, attempts=retries + 1)
    except Exception as again:
        # The database is unreachable even for the dead letter: keep the command in the broker.
        log.warning("command.dead_letter_failed", error=failures.kind_of(again))
        raise task.retry(countdown=failures.retry_delay(retries), exc=error) from again


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
