"""Real `zavhoz worker` processes on Redis and PostgreSQL."""

from __future__ import annotations

from celery import Celery
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from core.commands import Actor, RegisterUser, idempotency_key
from db.models import Outbox, ProcessedCommand, User
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI


def producer(redis_url: str) -> Celery:
    app = Celery("test-producer", broker=redis_url, set_as_current=False)
    app.conf.update(task_serializer="json")
    return app


def publish(app: Celery, command: RegisterUser, times: int = 1) -> None:
    for _ in range(times):
        app.send_task(command.task_name, kwargs=command.to_kwargs(), queue="interactive")


def counts(pg_url: str) -> tuple[int, int, int]:
    engine = create_engine(pg_url)
    with Session(engine) as s:
        result = tuple(
            s.scalar(select(func.count()).select_from(model)) or 0
            for model in (User, ProcessedCommand, Outbox)
        )
    engine.dispose()
    return result  # type: ignore[return-value]


def test_a_command_delivered_many_times_takes_effect_once(
    procs: Processes, live_sandbox: SandboxAPI, redis_url: str, pg_url: str
) -> None:
    procs.worker("w1", "-c", "2")
    procs.worker("w2", "-c", "2")
    live_sandbox.send_text(5005, "/start", first_name="Eve")
    command = RegisterUser(
        idempotency_key=idempotency_key(1),
        actor=Actor(user_id=5005, chat_id=5005, first_name="Eve"),
    )
    # Four copies race on two processes each of two workers: the unique key lets one through.
    publish(producer(redis_url), command, times=8)
    messages = live_sandbox.wait_messages(5005, 1)
    import time

    time.sleep(2)  # give the copies time to (not) send more
    assert len(live_sandbox.messages(5005)) == 1, messages
    assert counts(pg_url) == (1, 1, 1)


def test_two_first_messages_at_once_make_one_user(
    procs: Processes, live_sandbox: SandboxAPI, redis_url: str, pg_url: str
) -> None:
    procs.worker("w1", "-c", "2")
    procs.worker("w2", "-c", "2")
    live_sandbox.send_text(6006, "/start")
    app = producer(redis_url)
    for update_id in range(10, 16):
        publish(
            app,
            RegisterUser(
                idempotency_key=idempotency_key(update_id), actor=Actor(user_id=6006, chat_id=6006)
            ),
        )
    live_sandbox.wait_messages(6006, 6)
    assert counts(pg_url) == (1, 6, 6)
