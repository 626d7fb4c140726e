"""structlog configuration shared by every process: JSON in production, console on a TTY."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys that must never reach a log line, whatever a caller binds: secrets, and the fields of
# ours that hold user text or names (logs are kept and shipped; ids identify well enough).
_SECRET_KEYS = frozenset({"token", "bot_token", "text", "password", "secret", "webhook_secret"})
_PERSONAL_KEYS = frozenset(
    {"first_name", "last_name", "username", "title", "description", "location", "caption", "note"}
)
_MASKED = _SECRET_KEYS | _PERSONAL_KEYS


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in _MASKED & event.keys():
        event[key] = "***"
    return event


def _wrap_for_formatter(
    logger: Any, name: str, event: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, wrapped = structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, name, event)
    kwargs: dict[str, Any] = dict(wrapped)
    # The record carries the exception too: Sentry's logging integration reads it from there
    # (the rendered line still comes from the event's own exc_info, once).
    if exc := event.get("exc_info"):
        kwargs["exc_info"] = sys.exc_info() if exc is True else exc
    return args, kwargs


def configure_logging(log_format: str | None = None, level: str = "INFO") -> None:
    fmt = log_format or ("console" if sys.stderr.isatty() else "json")
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    structlog.configure(
        processors=[*shared, _wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Route stdlib logging (aiogram, celery, sqlalchemy) through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp/aiogram log request URLs, which carry the bot token.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if os.environ.get(QUIET_ENV) == "1":
        for name in CHATTER:
            logging.getLogger(name).setLevel(logging.WARNING)


# `zavhoz up` (one terminal for the whole system) shows one line per user action, the worker's
# `command.applied`, and problems: these per-message lines of every update and task go quiet.
QUIET_ENV = "ZAVHOZ_QUIET_LOGS"
CHATTER = (
    "aiogram.event",  # "Update id=N is handled"
    "bot.enqueue",  # command.enqueued
    "celery.worker.strategy",  # "Task ... received"
    "celery.app.trace",  # "Task ... succeeded"
    "celery.beat",  # "Scheduler: Sending due task"
    "workers.maintenance_tasks",
)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
