"""A real worker fails on a command full of personal data: Sentry and the log get none of it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import create_engine, text

from core.commands import Actor, Command, CreateRequest, EraseMe, idempotency_key
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI
from tests.support.sentry_receiver import SentryReceiver

pytestmark = pytest.mark.integration

PHONE, NAME, USERNAME = "+7 916 555-12-34", "Zinaida", "zina_secret"
PLANTED = (PHONE, NAME, USERNAME, "Petrovna")

# The database refuses new requests, as it might on a constraint, a full disk or a bug: the
# INSERT raises inside the handler, with the user's text in the statement's parameters.
REFUSE_REQUESTS = """
CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'requests refused by the test'; END $$;
CREATE TRIGGER test_refuse BEFORE INSERT ON requests FOR EACH ROW EXECUTE FUNCTION test_refuse();
"""


@pytest.fixture
def sentry() -> Iterator[SentryReceiver]:
    with SentryReceiver() as receiver:
        yield receiver


def refuse_requests(pg_url: str) -> None:
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(REFUSE_REQUESTS))
    engine.dispose()


def in_task(task_name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("extra", {}).get("celery-job", {}).get("task_name") == task_name


def test_a_failing_command_reaches_sentry_without_personal_data(
    sentry: SentryReceiver, procs: Processes, redis_url: str, pg_url: str
) -> None:
    refuse_requests(pg_url)
    worker = procs.worker("w1", "-c", "1", SENTRY_DSN=sentry.dsn)
    command = CreateRequest(
        idempotency_key=idempotency_key(77),
        actor=Actor(
            user_id=7007, chat_id=7007, first_name=NAME, last_name="Petrovna", username=USERNAME
        ),
        title=f"{NAME} {PHONE}",
        description=f"call {NAME} ({USERNAME}) at {PHONE}",
        location=f"flat of {NAME}",
    )
    # A plain producer, as any sender might be: the worker must not rely on the sender's care.
    producer = Celery("test-producer", broker=redis_url, set_as_current=False)
    producer.send_task(command.task_name, kwargs=command.to_kwargs(), queue="interactive")

    # Retried, then given up on (dead-lettered or raised, whichever the worker does): an event.
    event = sentry.wait_event(in_task(command.task_name))
    worker.stop()  # its log complete, its Sentry queue flushed
    raw = b"".join(sentry.raw()).decode(errors="replace")
    log = worker.log()
    for planted in PLANTED:
        assert planted not in raw, f"{planted!r} reached Sentry"
        assert planted not in log, f"{planted!r} reached the worker log"
    # Still worth reading: what failed (exception type or our log event name) and in which task.
    exception_types = [v["type"] for v in event.get("exception", {}).get("values", [])]
    message = event.get("logentry", {}).get("message")
    assert exception_types or (message and " " not in message), event
    assert event["tags"]["celery_task_id"]
    assert event["tags"]["task"] == command.task_name
    assert event["tags"]["command"] == "create_request"


def test_a_failing_erasure_reaches_sentry_without_personal_data(
    sentry: SentryReceiver, procs: Processes, redis_url: str, pg_url: str
) -> None:
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(REFUSE_REQUESTS.replace("requests", "erasure_audit")))
        conn.execute(
            text(
                "INSERT INTO users (telegram_id, username, first_name, last_name, language, role,"
                " reachable) VALUES (7008, :u, :n, 'Petrovna', 'en', 'resident', true)"
            ),
            {"u": USERNAME, "n": NAME},
        )
    engine.dispose()
    worker = procs.worker("w1", "-c", "1", SENTRY_DSN=sentry.dsn)
    command = EraseMe(
        idempotency_key=idempotency_key(78),
        actor=Actor(
            user_id=7008, chat_id=7008, first_name=NAME, last_name="Petrovna", username=USERNAME
        ),
    )
    producer = Celery("test-producer", broker=redis_url, set_as_current=False)
    producer.send_task(command.task_name, kwargs=command.to_kwargs(), queue="privacy")

    sentry.wait_event(in_task(command.task_name))
    worker.stop()
    raw = b"".join(sentry.raw()).decode(errors="replace")
    log = worker.log()
    for planted in PLANTED:
        assert planted not in raw, f"{planted!r} reached Sentry"
        assert planted not in log, f"{planted!r} reached the worker log"


def test_scheduled_jobs_send_cron_check_ins_for_start_and_finish(
    sentry: SentryReceiver, procs: Processes
) -> None:
    """Sentry's cron monitors: beat's jobs check in when they start and when they end (a job
    that stops running shows as missed there)."""
    procs.env.update(
        SENTRY_DSN=sentry.dsn,
        SCHEDULE_RETENTION="* * * * *",  # Sentry's crons take nothing under a minute
        SCHEDULE_RELAY="",
        SCHEDULE_REPORT_DAILY="",
        SCHEDULE_REPORT_WEEKLY="",
        SCHEDULE_ESCALATE="",
        SCHEDULE_CONSISTENCY="",
        SCHEDULE_ORPHANS="",
    )
    procs.worker("w1", "-c", "1")
    procs.start("beat", "beat")
    deadline = time.monotonic() + 180  # the next whole minute, after beat and worker start
    statuses: set[str] = set()
    while time.monotonic() < deadline and not {"in_progress", "ok"} <= statuses:
        statuses = {c.get("status", "") for c in sentry.check_ins()}
        time.sleep(0.5)
    assert {"in_progress", "ok"} <= statuses, sentry.check_ins()
    slugs = {c.get("monitor_slug") for c in sentry.check_ins()}
    assert slugs == {"retention"}, slugs
    finished = [c for c in sentry.check_ins() if c.get("status") == "ok"]
    assert all(isinstance(c.get("duration"), int | float) for c in finished), finished


async def test_a_failing_bot_handler_reaches_sentry_tagged_without_personal_data(
    sentry: SentryReceiver, live_sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real dispatcher, handlers and error handler, in this process: a handler fails with
    the user's words in the exception; Sentry learns the update type and the command word."""
    import sentry_sdk

    from bot.app import create_bot, create_dispatcher
    from bot.enqueue import CommandQueue
    from core.logging import configure_logging
    from core.observability import init_sentry
    from core.settings import get_settings

    class Broken(CommandQueue):
        async def send(self, command: Command) -> None:
            raise RuntimeError(f"cannot enqueue for {NAME} {PHONE} @{USERNAME}")

    monkeypatch.setenv("TELEGRAM_API_URL", live_sandbox.url)
    monkeypatch.setenv("SENTRY_DSN", sentry.dsn)
    get_settings.cache_clear()
    settings = get_settings()
    configure_logging("json", "INFO")  # as the bot's main does: log lines go through logging
    assert init_sentry(settings)
    bot = create_bot(settings)
    dp = create_dispatcher(settings, Broken("memory://"))
    try:
        live_sandbox.send_text(7009, f"/start {PHONE}", first_name=NAME, username=USERNAME)
        updates = await bot.get_updates(timeout=0)
        for update in updates:
            await dp.feed_update(bot, update)
        sentry_sdk.flush(5)
        event = sentry.wait_event(lambda e: e.get("tags", {}).get("update_type") == "message")
    finally:
        await bot.session.close()
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # no DSN: nothing more leaves this test process
    assert event["tags"]["command"] == "/start"
    assert event["logentry"]["message"] == "update.failed"
    assert [v["type"] for v in event["exception"]["values"]] == ["RuntimeError"]
    raw = b"".join(sentry.raw()).decode(errors="replace")
    for planted in (PHONE, NAME, USERNAME, "7009"):
        assert planted not in raw, f"{planted!r} reached Sentry"
    # The user was told, briefly.
    assert live_sandbox.messages(7009)
