"""Interactive commands (queue `interactive`): one task per user action, named as in core.

The task layer: it applies a command through the registry's handler, sends the actor's replies
right after commit, hands everything else over as tasks, and retries or dead-letters failures.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from pydantic import ValidationError

from core import commands as c
from core.clock import as_utc, now
from core.logging import get_logger
from core.metrics import metrics
from workers import failures, outbox
from workers.app import app, send_signatures
from workers.command_runner import C, Handler, apply_command
from workers.commands import HANDLERS
from workers.redelivery import CappedTask

log = get_logger(__name__)


def run_command(command: C, handler: Handler[C]) -> bool:
    """Apply `command` once, then do what it left for after commit; False when it had been
    applied already (a redelivery)."""
    outcome = apply_command(command, handler)
    log.info(
        "command.applied" if outcome.applied else "command.duplicate",
        replies=len(outcome.inline),
        notices=len(outcome.notices),
    )
    # Fast path: the actor's own replies go out now; what fails stays pending for a retry.
    report = outbox.deliver(outcome.inline, claimed=outcome.claimed)
    if outcome.applied and command.issued_at is not None and report.counts.get("sent"):
        # The user's wait: from the bot's receipt of the update (Telegram's own `date` has
        # whole seconds only) to Telegram accepting the reply.
        waited = (now() - as_utc(command.issued_at)).total_seconds()
        metrics().command_latency.labels(command.task_name).observe(max(0.0, waited))
    send_signatures(
        [
            outbox.retry_signature(report),
            outbox.deliver_signature(outcome.notices),
            *outcome.after_commit,
        ]
    )
    return outcome.applied


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


TASKS = {model.task_name: command_task(model, handler) for model, handler in HANDLERS.items()}
register_user = TASKS[c.RegisterUser.task_name]
