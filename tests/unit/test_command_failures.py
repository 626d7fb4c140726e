"""A failing command is never dropped: outages are retried, own faults are dead-lettered
(kept, counted, replayable) and the user is told. Real messages through an in-process worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session

from core.commands import Actor, RegisterUser, idempotency_key
from core.texts import t
from db.models import DeadLetter, ProcessedCommand, User
from tests.support.sandbox_api import SandboxAPI
from workers import command_tasks, dead_letters, failures

pytestmark = pytest.mark.usefixtures("db", "inproc_worker")


# Each test talks to its own chat: a task an earlier test left in the shared in-process
# worker must not answer into this test's chat.
def start(update_id: int, user_id: int) -> RegisterUser:
    return RegisterUser(
        idempotency_key=idempotency_key(update_id),
        actor=Actor(user_id=user_id, chat_id=user_id, language="en", first_name="Ann"),
    )


def send(command: RegisterUser | dict[str, Any]) -> None:
    from workers.app import app

    kwargs = command.to_kwargs() if isinstance(command, RegisterUser) else {"command": command}
    app.send_task(RegisterUser.task_name, kwargs=kwargs)


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def count(engine: Engine, model: type, *where: Any) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def fast_retries(sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    # After the sandbox fixture: the worker's threads read settings this test made.
    monkeypatch.setenv("COMMAND_RETRY_CAP_SECONDS", "0.1")
    from core.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[int]]:
    """Make the next `times` runs of the command with `key` raise `error` (then behave),
    counting its runs (a message of another test still in the broker is not counted)."""
    real = command_tasks.run_command

    def arrange(error: BaseException, times: int, key: str | None = None) -> list[int]:
        runs: list[int] = []

        def flaky(command: Any, handler: Any) -> bool:
            if key is None or command.idempotency_key == key:
                runs.append(1)
                if len(runs) <= times:
                    raise error
            return real(command, handler)

        monkeypatch.setattr(command_tasks, "run_command", flaky)
        return runs

    return arrange


def outage() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_errors_are_told_apart() -> None:
    assert failures.is_outage(outage())
    assert failures.is_outage(RuntimeError("wrapped")) is False
    wrapped = RuntimeError("while saving")
    wrapped.__cause__ = outage()
    assert failures.is_outage(wrapped)  # anywhere in the chain of causes
    assert not failures.is_outage(DataError("INSERT", {}, ValueError("NUL byte")))


def test_the_outage_budget_covers_the_configured_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import get_settings

    assert get_settings().command_retry_seconds >= 3600  # the default: at least an hour
    retries = failures.outage_retries()
    assert sum(failures.retry_delay(n) for n in range(retries)) >= 3600
    assert max(failures.retry_delay(n) for n in range(retries)) <= 30  # never parked long


@pytest.mark.usefixtures("fast_retries")
def test_a_command_meeting_an_outage_is_applied_once_it_is_over(
    db: Engine, sandbox: SandboxAPI, failing: Callable[..., list[int]]
) -> None:
    sandbox.send_text(5101, "/start")
    runs = failing(outage(), 7, key="tg-update:1")  # more than the old retry count (5)
    send(start(1, user_id=5101))
    wait_for(lambda: count(db, User) == 1)
    assert len(runs) == 8
    assert count(db, DeadLetter) == 0
    assert sandbox.wait_messages(5101, 1)[0]["text"].startswith("Hello, Ann!")


@pytest.mark.usefixtures("fast_retries")
def test_a_command_failing_for_its_own_reasons_is_dead_lettered_and_the_user_told(
    db: Engine, sandbox: SandboxAPI, failing: Callable[..., list[int]]
) -> None:
    sandbox.send_text(5102, "/start")
    runs = failing(DataError("INSERT", {}, ValueError("bad content")), 100, key="tg-update:2")
    send(start(2, user_id=5102))
    wait_for(lambda: count(db, DeadLetter) == 1)
    with Session(db) as s:
        letter = s.scalars(select(DeadLetter)).one()
    assert (letter.task_name, letter.attempts) == (RegisterUser.task_name, 3)
    assert letter.idempotency_key == "tg-update:2"
    assert "DataError" in letter.error
    assert letter.command["actor"]["user_id"] == 5102
    assert len(runs) == failures.OWN_FAULT_ATTEMPTS
    (told,) = sandbox.wait_messages(5102, 1)
    assert told["text"] == t("command.failed", "en")
    # Nothing half-applied. (Counted for this user: a retry of the previous test's command can
    # still reach the shared in-process worker and land in this database.)
    assert count(db, User, User.telegram_id == 5102) == 0
    assert count(db, ProcessedCommand, ProcessedCommand.key == "tg-update:2") == 0

    # Fixed (here: the fault goes away), an operator replays it: applied once, marked.
    failing(RuntimeError("unused"), 0)
    with Session(db) as s:
        assert dead_letters.waiting(s) == 1
    assert dead_letters.replay([letter.id]) == [letter.id]
    wait_for(lambda: count(db, User, User.telegram_id == 5102) == 1)
    assert dead_letters.replay([letter.id]) == []  # replayed already
    with Session(db) as s:
        assert dead_letters.waiting(s) == 0
    assert sandbox.wait_messages(5102, 2)[1]["text"].startswith("Hello, Ann!")


@pytest.mark.usefixtures("fast_retries")
def test_an_outage_longer_than_the_budget_is_dead_lettered_not_dropped(
    db: Engine,
    sandbox: SandboxAPI,
    failing: Callable[..., list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMMAND_RETRY_SECONDS", "0.5")
    from core.settings import get_settings

    get_settings.cache_clear()
    sandbox.send_text(5103, "/start")
    runs = failing(outage(), 1000, key="tg-update:3")
    send(start(3, user_id=5103))
    wait_for(lambda: count(db, DeadLetter) == 1)
    assert len(runs) == failures.outage_retries() + 1
    with Session(db) as s:
        assert "OperationalError" in s.scalars(select(DeadLetter.error)).one()


def test_a_malformed_command_is_dead_lettered_at_once(db: Engine, sandbox: SandboxAPI) -> None:
    from core.settings import get_settings

    get_settings.cache_clear()  # the worker's threads must see this test's sandbox
    sandbox.send_text(5104, "/start")
    send({"idempotency_key": "tg-update:9", "actor": {"user_id": "not a number", "chat_id": 5104}})
    wait_for(lambda: count(db, DeadLetter) == 1)
    with Session(db) as s:
        letter = s.scalars(select(DeadLetter)).one()
    assert letter.attempts == 1 and "ValidationError" in letter.error
    assert sandbox.wait_messages(5104, 1)[0]["text"] == t("command.failed", "en")
