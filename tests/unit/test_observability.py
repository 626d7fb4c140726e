"""What Sentry and Celery's argument reprs may carry: structure and ids, never user text.

The hooks are taken from the options init_sentry gives the SDK, so these tests judge what
Sentry would really run.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sentry_sdk
from celery import Celery

from core.commands import Actor, CreateRequest, idempotency_key
from core.observability import init_sentry
from core.settings import Settings

PHONE, NAME, USERNAME = "+7 916 555-12-34", "Zinaida", "zina_secret"
PLANTED = (PHONE, NAME, USERNAME)
USER_TEXT = f"{NAME} ({USERNAME}) {PHONE}"
REDACTED = "[redacted]"


@pytest.fixture
def options(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(sentry_sdk, "init", lambda **given: seen.update(given))
    assert init_sentry(Settings(sentry_dsn="http://public@127.0.0.1:9/1"))
    return seen


def frame(function: str, lineno: int) -> dict[str, Any]:
    return {
        "filename": "workers/desk/handlers.py",
        "function": function,
        "lineno": lineno,
        "in_app": True,
        "context_line": "    session.flush()",
        "vars": {"command": f"CreateRequest(title='{USER_TEXT}')", "title": USER_TEXT},
    }


def failed_task_event() -> dict[str, Any]:
    """As the SDK builds it for a task that raised, with everything an integration may add."""
    return {
        "event_id": "abc123",
        "level": "error",
        "platform": "python",
        "transaction": "commands.create_request",
        "exception": {
            "values": [
                {
                    "type": "RaiseException",
                    "module": "psycopg.errors",
                    "value": f"Failing row contains ({USER_TEXT})",
                    "mechanism": {"type": "celery", "handled": False, "data": {"x": USER_TEXT}},
                    "stacktrace": {"frames": [frame("create_request", 68)]},
                },
                {
                    "type": "DataError",
                    "module": "sqlalchemy.exc",
                    "value": f"[parameters: {{'title': '{USER_TEXT}'}}]",
                    "stacktrace": {"frames": [frame("run_command", 31)]},
                },
            ]
        },
        "logentry": {"message": f"failed for {USER_TEXT}", "params": [USER_TEXT]},
        "breadcrumbs": {
            "values": [
                {
                    "type": "log",
                    "category": "workers.commands",
                    "level": "warning",
                    "message": f"{{'event': 'command.retry', 'error': '{USER_TEXT}'}}",
                    "data": {"error": USER_TEXT, "retries": 1},
                },
                {
                    "type": "http",
                    "category": "httplib",
                    "data": {
                        "url": f"https://api.telegram.org/bot123:tok/sendMessage?text={NAME}",
                        "method": "POST",
                        "status_code": 400,
                    },
                },
            ]
        },
        "extra": {
            "celery-job": {
                "task_name": "commands.create_request",
                "args": [USER_TEXT],
                "kwargs": {"command": {"title": USER_TEXT, "actor": {"first_name": NAME}}},
            },
            "sys.argv": ["zavhoz", NAME],
            "request_id": 42,
        },
        "tags": {"celery_task_id": "0201c0ba", "user_text": USER_TEXT},
        "contexts": {
            "runtime": {"name": "CPython", "version": "3.11.9"},
            "trace": {"trace_id": "t1", "span_id": "s1", "op": "queue.task", "data": USER_TEXT},
            "celery": {"args": USER_TEXT},
        },
        "user": {"username": USERNAME},
        "request": {"method": "POST", "data": USER_TEXT, "headers": {"X-Name": NAME}},
    }


def test_an_event_keeps_its_structure_and_loses_every_user_string(options: dict[str, Any]) -> None:
    event = options["before_send"](failed_task_event(), {})

    dumped = json.dumps(event)
    for planted in PLANTED:
        assert planted not in dumped
    # Still enough to debug: types, frames without their variables, task name and id.
    values = event["exception"]["values"]
    assert [(v["type"], v["module"], v["value"]) for v in values] == [
        ("RaiseException", "psycopg.errors", REDACTED),
        ("DataError", "sqlalchemy.exc", REDACTED),
    ]
    assert values[0]["mechanism"] == {"type": "celery", "handled": False}
    top = values[0]["stacktrace"]["frames"][0]
    assert top["function"] == "create_request" and top["lineno"] == 68 and "vars" not in top
    assert event["extra"] == {
        "celery-job": {"task_name": "commands.create_request"},
        "request_id": 42,
    }
    assert event["tags"] == {
        "celery_task_id": "0201c0ba",
        "task": "commands.create_request",
        "command": "create_request",
    }
    assert event["transaction"] == "commands.create_request"
    assert event["logentry"] == {"message": REDACTED}
    assert event["contexts"] == {
        "runtime": {"name": "CPython", "version": "3.11.9"},
        "trace": {"trace_id": "t1", "span_id": "s1", "op": "queue.task"},
    }
    assert event["request"] == {"method": "POST"} and "user" not in event
    log_crumb, http_crumb = event["breadcrumbs"]["values"]
    assert log_crumb["message"] == REDACTED and log_crumb["data"] == {"retries": 1}
    assert http_crumb["data"] == {
        "url": "https://api.telegram.org",
        "method": "POST",
        "status_code": 400,
    }


def structlog_record(level: int, event: str, **values: Any) -> logging.LogRecord:
    # As structlog's ProcessorFormatter.wrap_for_formatter hands the event to stdlib logging.
    return logging.LogRecord(
        "workers.commands", level, __file__, 1, {"event": event, **values}, (), None
    )


def test_a_log_event_keeps_our_event_name_and_its_numbers_only(options: dict[str, Any]) -> None:
    record = structlog_record(
        logging.ERROR, "command.dead_lettered", dead_letter_id=7, error=USER_TEXT
    )
    event = {"level": "error", "logentry": {"message": str(record.msg), "params": ()}, "extra": {}}

    scrubbed = options["before_send"](event, {"log_record": record})

    assert scrubbed["logentry"] == {"message": "command.dead_lettered"}
    assert scrubbed["extra"] == {"dead_letter_id": 7}


def test_a_breadcrumb_from_a_stdlib_record_keeps_the_template_not_the_values(
    options: dict[str, Any],
) -> None:
    before_breadcrumb = options.get("before_breadcrumb") or (lambda crumb, _: crumb)
    record = logging.LogRecord(
        "kombu", logging.INFO, __file__, 1, "Sent to %s: %r", (NAME, PHONE), None
    )
    crumb = {"type": "log", "category": "kombu", "message": record.getMessage(), "data": {}}

    assert before_breadcrumb(crumb, {"log_record": record})["message"] == "Sent to %s: %r"
    # Without the record (as in an event's list): the formatted text, so nothing.
    assert before_breadcrumb(crumb, {})["message"] == REDACTED


def test_sentry_collects_no_locals_bodies_or_default_pii(options: dict[str, Any]) -> None:
    assert options["send_default_pii"] is False
    assert options["include_local_variables"] is False
    assert options["max_request_body_size"] == "never"


def command_kwargs() -> dict[str, Any]:
    command = CreateRequest(
        idempotency_key=idempotency_key(5),
        actor=Actor(user_id=5005, chat_id=5005, first_name=NAME, username=USERNAME),
        title=PHONE,
        description=USER_TEXT,
        location=NAME,
    )
    return command.to_kwargs()


def test_safe_repr_keeps_the_shape_and_ids() -> None:
    from core.observability import safe_repr

    shown = safe_repr(command_kwargs())

    for planted in PLANTED:
        assert planted not in shown
    assert "'idempotency_key': 'tg-update:5'" in shown and "'user_id': 5005" in shown


def test_messages_built_by_the_redacting_amqp_carry_no_user_text() -> None:
    app = Celery(
        "test", broker="memory://", set_as_current=False, amqp="core.observability:RedactingAMQP"
    )
    message = app.amqp.create_task_message(
        "id-1", "commands.create_request", (), command_kwargs(), create_sent_event=True
    )

    for shown in (message.headers, message.sent_event):
        dumped = json.dumps(shown, default=str)
        assert "tg-update:5" in dumped
        for planted in PLANTED:
            assert planted not in dumped
    # An explicit repr from the sender still wins.
    explicit = app.amqp.create_task_message("id-2", "t", (), {}, kwargsrepr="{'x': 1}")
    assert explicit.headers["kwargsrepr"] == "{'x': 1}"


def test_sql_parameters_stay_out_of_database_errors(tmp_path: Any) -> None:
    from sqlalchemy import text

    from db.session import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with engine.connect() as conn:
        try:
            conn.execute(text("SELECT * FROM missing WHERE name = :name"), {"name": USER_TEXT})
        except Exception as error:
            message = str(error)
    engine.dispose()
    assert "missing" in message and NAME not in message


def test_a_cron_check_in_keeps_what_sentry_needs() -> None:
    from core.observability import scrub_event

    check_in = {
        "type": "check_in",
        "check_in_id": "abc",
        "monitor_slug": "retention",
        "status": "ok",
        "duration": 0.2,
        "monitor_config": {"schedule": {"type": "crontab", "value": "30 3 * * *"}},
        "extra": {"note": "Rita"},
    }
    kept = scrub_event(check_in)
    assert {k: kept[k] for k in ("monitor_slug", "status", "duration", "check_in_id")} == {
        "monitor_slug": "retention",
        "status": "ok",
        "duration": 0.2,
        "check_in_id": "abc",
    }
    assert "Rita" not in str(kept)
    assert "monitor_slug" not in scrub_event({"monitor_slug": "x"})  # only on check-ins


def test_command_tags_are_kept_only_as_our_own_words() -> None:
    from core.observability import scrub_event

    kept = scrub_event({"tags": {"command": "/start", "update_type": "message", "task": "x.y"}})
    assert kept["tags"] == {"command": "/start", "update_type": "message", "task": "x.y"}
    user_text = {"command": "call Zinaida +7 916", "update_type": "message", "other": "x"}
    assert scrub_event({"tags": user_text})["tags"] == {"update_type": "message"}
