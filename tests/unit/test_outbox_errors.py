"""Every send error has a class, and a row never waits on the limiter past its lease."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core import clock
from core.pacing import get_limiter
from db.models import Outbox
from db.session import session_scope
from tests.support.sandbox_api import SandboxAPI
from workers import outbox

pytestmark = pytest.mark.usefixtures("db")
CHAT = 4242


def write(text: str = "hello") -> int:
    with session_scope() as session:
        replies = outbox.Replies(session, f"test:{text}")
        row = replies.message(CHAT, text)
        session.flush()
        return row.id


def row(engine: Engine, row_id: int) -> Outbox:
    with Session(engine) as s:
        found = s.get(Outbox, row_id)
        assert found is not None
        return found


def deliver_when_due(row_id: int, timeout: float = 10) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = outbox.deliver([row_id]).counts
        if "skipped" not in counts:
            return counts
        time.sleep(0.1)
    raise AssertionError("never became due")


@pytest.fixture
def chat(sandbox: SandboxAPI) -> SandboxAPI:
    sandbox.send_text(CHAT, "/start")  # the chat exists at the sandbox
    return sandbox


def test_an_html_error_page_is_transient(chat: SandboxAPI, db: Engine) -> None:
    chat.fault("html5xx", count=1)
    row_id = write()
    assert outbox.deliver([row_id]).counts == {"retry": 1}
    failed = row(db, row_id)
    assert failed.state == "pending" and "ClientDecodeError" in (failed.last_error or "")
    assert clock.as_utc(failed.next_attempt_at) <= clock.now() + timedelta(seconds=2)
    assert deliver_when_due(row_id) == {"sent": 1}
    assert [m["text"] for m in chat.messages(CHAT)] == ["hello"]


def test_a_429_without_retry_after_pauses_everyone_briefly(chat: SandboxAPI, db: Engine) -> None:
    chat.fault("429bare", count=1)
    row_id = write()
    assert outbox.deliver([row_id]).counts == {"retry": 1}
    assert 0 < get_limiter().paused_for() <= outbox.DEFAULT_RETRY_AFTER_S
    assert row(db, row_id).state == "pending"
    assert deliver_when_due(row_id) == {"sent": 1}


def test_a_429_is_not_counted_as_an_attempt(chat: SandboxAPI, db: Engine) -> None:
    """Telegram throttling the bot says nothing about the row: a row throttled again and again
    (a long broadcast beside it) is sent in the end, not given up."""
    row_id = write()
    with Session(db) as s:  # throttled many times already
        throttled = s.get(Outbox, row_id)
        assert throttled is not None
        throttled.attempts = outbox.MAX_ATTEMPTS - 1
        s.commit()
    chat.fault("429", count=1, retry_after=1)
    assert outbox.deliver([row_id]).counts == {"retry": 1}
    assert (row(db, row_id).state, row(db, row_id).attempts) == ("pending", outbox.MAX_ATTEMPTS - 1)
    assert deliver_when_due(row_id) == {"sent": 1}


def test_an_unknown_error_backs_off_and_gives_up_after_the_cap(
    chat: SandboxAPI, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import telegram

    def broken(self: object, method: object) -> object:
        raise RuntimeError("something nobody has seen before")

    monkeypatch.setattr(telegram.TelegramClient, "call", broken)
    monkeypatch.setattr(outbox, "backoff_delay", lambda attempts: 0.0)
    row_id = write()
    for _ in range(outbox.MAX_ATTEMPTS - 1):
        assert outbox.deliver([row_id]).counts == {"retry": 1}
    assert outbox.deliver([row_id]).counts == {"failed": 1}
    gave_up = row(db, row_id)
    assert gave_up.attempts == outbox.MAX_ATTEMPTS
    assert gave_up.last_error == "RuntimeError: something nobody has seen before"


def test_a_pause_longer_than_the_lease_gives_the_row_back_unsent(
    chat: SandboxAPI, db: Engine
) -> None:
    """A worker waiting on the limiter while its lease ran out let another worker take the row:
    the message went out twice. Now the row goes back, due when the pause ends."""
    get_limiter().pause(300)  # a 429 with retry_after far beyond the 120 s lease
    row_id = write()
    started = time.monotonic()
    assert outbox.deliver([row_id]).counts == {"retry": 1}
    assert time.monotonic() - started < 2  # it did not sit on the claimed row
    back = row(db, row_id)
    assert (back.state, back.attempts) == ("pending", 0)
    assert clock.as_utc(back.next_attempt_at) >= clock.now() + timedelta(seconds=290)
    assert chat.messages(CHAT) == []


def test_a_row_whose_send_kills_its_worker_every_time_ends_dead(
    chat: SandboxAPI, db: Engine
) -> None:
    """Each attempt died with its worker (the lease ran out and the relay handed the row back):
    after MAX_ATTEMPTS claims it is dead, not retried for ever."""
    row_id = write("poison")
    with Session(db) as s:
        poisoned = s.get(Outbox, row_id)
        assert poisoned is not None
        poisoned.attempts = outbox.MAX_ATTEMPTS  # claimed that often, never an outcome
        s.commit()
    assert outbox.deliver([row_id]).counts == {"skipped": 1}
    assert row(db, row_id).state == "dead"
    assert chat.messages(CHAT) == []


def test_a_send_cut_by_the_soft_time_limit_is_recorded_and_stops_the_task(
    chat: SandboxAPI, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    first, second = write("one"), write("two")
    client = outbox.get_client()

    def cut(method: object) -> object:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(client, "call", cut)
    with pytest.raises(SoftTimeLimitExceeded):
        outbox.deliver([first, second])
    # The row it was sending is pending again (it may have gone: a retry, as for a timeout),
    # and the task did not go on to send the next one in its remaining second.
    cut_row, next_row = row(db, first), row(db, second)
    assert cut_row.state == "pending" and "SoftTimeLimitExceeded" in (cut_row.last_error or "")
    assert (next_row.state, next_row.attempts) == ("pending", 0)


def test_a_limiter_out_of_reach_gives_the_row_back_due_and_the_task_retries(
    chat: SandboxAPI, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down at the limiter left the claimed row "sending" until its lease ran out: the
    reply went out minutes after Redis was back. Now it is pending and due at once."""
    from core.settings import get_settings

    row_id = write()
    # Nothing listens there: a real refused connection, not a mock.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    with pytest.raises(RedisError):
        outbox.deliver([row_id])
    back = row(db, row_id)
    assert (back.state, back.attempts) == ("pending", 0)
    assert clock.as_utc(back.next_attempt_at) <= clock.now()
    assert chat.messages(CHAT) == []
    monkeypatch.delenv("REDIS_URL")
    get_settings.cache_clear()
    assert outbox.deliver([row_id]).counts == {"sent": 1}
    assert [m["text"] for m in chat.messages(CHAT)] == ["hello"]
