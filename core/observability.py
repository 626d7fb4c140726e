"""Sentry setup shared by the processes: structure leaves the machine, user text never does.

A phone number or a name in free text cannot be recognised reliably, so nothing here guesses.
Events keep what is known to be safe (exception types, frames' file/function/line and source,
our log event names, task names and ids, numbers) and every other string is dropped or
replaced with REDACTED. The same goes for the argument reprs Celery puts in its messages.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from celery.app.amqp import AMQP

from core.settings import Settings

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

REDACTED = "[redacted]"

# Our structlog event names ("command.dead_lettered") and logger names: code, not data.
_NAME = re.compile(r"[A-Za-z_][\w.:-]{0,99}")
# A stdlib "%s"-style template: the values are in the record's args, which never leave.
_TEMPLATE = re.compile(r"%(\(\w+\))?[sdrif]")
_EVENT_KEYS = frozenset(
    {
        *("event_id", "timestamp", "start_timestamp", "type", "level", "logger", "platform"),
        *("sdk", "release", "environment", "server_name", "modules", "fingerprint"),
        *("transaction", "transaction_info"),  # the task or handler name
    }
)
_FRAME_KEYS = frozenset(
    {
        *("filename", "abs_path", "module", "function", "lineno", "colno", "in_app"),
        *("package", "platform", "context_line", "pre_context", "post_context"),
    }
)
_MECHANISM_KEYS = frozenset(
    {"type", "handled", "synthetic", "source", "exception_id", "parent_id", "is_exception_group"}
)
_TRACE_KEYS = frozenset(
    {"trace_id", "span_id", "parent_span_id", "op", "status", "origin", "same_process_as_parent"}
)
_SPAN_KEYS = _TRACE_KEYS | {"start_timestamp", "timestamp"}
_CONTEXTS = frozenset({"runtime", "os", "device"})  # about the machine, never the user
_TAGS = frozenset({"celery_task_id", "level", "logger"})
_NAMED_TAGS = frozenset({"task", "command", "update_type"})
_TAG_VALUE = re.compile(r"/?[A-Za-z_][\w.:-]{0,63}")
# Command fields that are ids or enumerations by construction.
_SAFE_ARG_KEYS = frozenset({"schema", "idempotency_key", "kind", "task_name"})


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _keep(mapping: Any, keys: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in _dict(mapping).items() if k in keys}


def _numbers(mapping: Any) -> dict[str, Any]:
    """Integers (our ids), floats and flags: no text can hide in them."""
    return {k: v for k, v in _dict(mapping).items() if isinstance(v, int | float) and _is_name(k)}


def _stacktrace(stacktrace: Any) -> dict[str, Any]:
    # Frame variables go: they hold the command being handled.
    return {
        "frames": [_keep(frame, _FRAME_KEYS) for frame in _dict(stacktrace).get("frames") or []]
    }


def _exception(value: dict[str, Any]) -> dict[str, Any]:
    # A database error quotes the row, a validation error the input: only the type is safe.
    kept = _keep(value, frozenset({"type", "module", "thread_id"}))
    kept["value"] = REDACTED
    if "mechanism" in value:
        kept["mechanism"] = _keep(value["mechanism"], _MECHANISM_KEYS)
    if "stacktrace" in value:
        kept["stacktrace"] = _stacktrace(value["stacktrace"])
    return kept


def _log_message(message: Any, hint: Any) -> str:
    """What a log record may say: our event name, or a stdlib template without its values."""
    record = hint.get("log_record") if isinstance(hint, dict) else None
    if isinstance(record, logging.LogRecord):
        # A structlog event is a dict (its name under "event"), a stdlib one a "%s" template.
        message = record.msg.get("event") if isinstance(record.msg, dict) else record.msg
    if _is_name(message) or (isinstance(message, str) and _TEMPLATE.search(message)):
        return str(message)
    return REDACTED


def _log_values(hint: Any) -> dict[str, Any]:
    record = hint.get("log_record") if isinstance(hint, dict) else None
    return _numbers(record.msg) if isinstance(record, logging.LogRecord) else {}


def _url_origin(url: Any) -> str | None:
    # The path may hold the bot token (api.telegram.org/bot<token>/...), the query user text.
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else None


def scrub_breadcrumb(crumb: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    kept = _keep(crumb, frozenset({"type", "category", "level", "timestamp"}))
    if "message" in crumb:
        kept["message"] = _log_message(crumb["message"], hint)
    data = _dict(crumb.get("data"))
    kept["data"] = {**_numbers(data), **_log_values(hint)}
    if data.get("method") in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}:
        kept["data"]["method"] = data["method"]
    if origin := _url_origin(data.get("url")):
        kept["data"]["url"] = origin
    return kept


# A cron monitor's check-in (beat's jobs): the job's schedule entry and how its run went.
_CHECK_IN_KEYS = frozenset(
    {"check_in_id", "monitor_slug", "status", "duration", "monitor_config", "type"}
)


def scrub_event(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """The event rebuilt from its known-safe parts (for errors and transactions alike)."""
    kept = _keep(event, _EVENT_KEYS)
    if event.get("type") == "check_in":
        # Names of schedule entries and numbers: without them Sentry drops the check-in.
        kept.update(_keep(event, _CHECK_IN_KEYS))
    if "exception" in event:
        values = _dict(event["exception"]).get("values") or []
        kept["exception"] = {"values": [_exception(_dict(v)) for v in values]}
    if "threads" in event:
        kept["threads"] = {
            "values": [
                {
                    **_keep(t, frozenset({"id", "crashed", "current", "main"})),
                    "stacktrace": _stacktrace(_dict(t).get("stacktrace")),
                }
                for t in _dict(event["threads"]).get("values") or []
            ]
        }
    if "logentry" in event or "message" in event:
        entry = _dict(event.get("logentry")) or {"message": event.get("message")}
        kept["logentry"] = {"message": _log_message(entry.get("message"), hint)}
    if "breadcrumbs" in event:
        crumbs = _dict(event["breadcrumbs"]).get("values") or []
        kept["breadcrumbs"] = {"values": [scrub_breadcrumb(_dict(b)) for b in crumbs]}
    # Celery's integration puts the task's args and kwargs here: only its name stays.
    extra = _dict(event.get("extra"))
    kept["extra"] = {**_numbers(extra), **_log_values(hint)}
    if isinstance(job := extra.get("celery-job"), dict):
        kept["extra"]["celery-job"] = _keep(job, frozenset({"task_name"}))
    tags = _dict(event.get("tags"))
    kept["tags"] = {k: v for k, v in tags.items() if k in _TAGS and isinstance(v, str | int)}
    # Which task and which command (the bot's command word or button kind, or the command
    # task's name): our vocabulary, so kept when it looks like it.
    kept["tags"].update(
        {k: v for k, v in tags.items() if k in _NAMED_TAGS and _TAG_VALUE.fullmatch(str(v))}
    )
    task = _dict(extra.get("celery-job")).get("task_name")
    if isinstance(task, str) and _is_name(task):
        kept["tags"]["task"] = task
        if task.startswith("commands."):
            kept["tags"]["command"] = task.removeprefix("commands.")
    contexts = _dict(event.get("contexts"))
    kept["contexts"] = _keep(contexts, _CONTEXTS)
    if "trace" in contexts:
        kept["contexts"]["trace"] = _keep(contexts["trace"], _TRACE_KEYS)
    if isinstance(event.get("request"), dict):
        kept["request"] = _keep(event["request"], frozenset({"method"}))
    if isinstance(event.get("spans"), list):
        kept["spans"] = [_keep(span, _SPAN_KEYS) for span in event["spans"]]
    return kept


def _before_send(event: Event, hint: Hint) -> Event | None:
    return cast("Event", scrub_event(cast(dict[str, Any], event), hint))


def _before_breadcrumb(crumb: Any, hint: Any) -> Any:
    return scrub_breadcrumb(crumb, hint)


def init_sentry(settings: Settings, integrations: Sequence[Any] = ()) -> bool:
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        integrations=list(integrations),
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=_before_send,
        before_send_transaction=_before_send,
        before_breadcrumb=_before_breadcrumb,
    )
    return True


def _shape(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shape(v, key) for v in value]
    if isinstance(value, str):
        return value if key in _SAFE_ARG_KEYS else REDACTED
    if value is None or isinstance(value, int | float):
        return value
    return f"<{type(value).__name__}>"


def safe_repr(value: Any) -> str:
    """Task arguments as Celery may show them: their shape, numbers and ids, no user text."""
    return repr(_shape(value))[:1024]


SENT_AT_HEADER = "zavhoz_sent_at"


class RedactingAMQP(AMQP):
    """Celery's message builder with `safe_repr` for argsrepr/kwargsrepr, which go into every
    message's headers, task-sent/received events (Flower, `celery events`) and log contexts.
    Celery computes them from the real arguments on each send, retries included, so the
    sending app is where to set them: Celery(..., amqp="core.observability:RedactingAMQP")."""

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        # Celery.send_task passes (task_id, name, args, kwargs, ...) positionally.
        given = {**dict(zip(("task_id", "name", "args", "kwargs"), args, strict=False)), **kwargs}
        if kwargs.get("argsrepr") is None:
            kwargs["argsrepr"] = safe_repr(given.get("args") or ())
        if kwargs.get("kwargsrepr") is None:
            kwargs["kwargsrepr"] = safe_repr(given.get("kwargs") or {})
        message = super().as_task_v2(*args, **kwargs)
        # When it was sent: `zavhoz status` reads the age of each queue's oldest message by it.
        message.headers[SENT_AT_HEADER] = time.time()
        return message
