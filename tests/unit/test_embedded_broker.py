"""The embedded broker gives a fetched, unacknowledged message out again (its worker died) and
keeps no message once it is acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue
from sqlalchemy import create_engine, text

from core.embedded_broker import SCHEME, Channel, register


@pytest.fixture
def url(tmp_path: Path) -> str:
    register()
    return f"{SCHEME}+sqlite:///{tmp_path / 'broker.sqlite3'}"


QUEUE = Queue("interactive", Exchange("interactive"), routing_key="interactive")


def publish(url: str, body: str) -> None:
    with Connection(url) as conn:
        conn.Producer().publish(
            body, exchange=QUEUE.exchange, routing_key="interactive", declare=[QUEUE]
        )


def rows(url: str) -> int:
    engine = create_engine(url.removeprefix(SCHEME + "+"))
    with engine.connect() as conn:
        count = int(conn.execute(text("SELECT count(*) FROM kombu_message")).scalar() or 0)
    engine.dispose()
    return count


def test_an_acknowledged_message_is_deleted(url: str) -> None:
    publish(url, "hello")
    with Connection(url) as conn:
        message = conn.SimpleQueue(QUEUE).get(timeout=5)
        assert message.payload == "hello"
        message.ack()
    assert rows(url) == 0


def test_a_message_its_worker_never_acknowledged_comes_back(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Channel, "visibility_timeout_s", 0.5)
    monkeypatch.setattr(Channel, "restore_every_s", 0.0)
    publish(url, "create request #1")
    dead = Connection(url)
    fetched = dead.SimpleQueue(QUEUE).get(timeout=5)  # fetched, then the worker is killed:
    assert fetched.payload == "create request #1"  # no ack, no reject, no close
    with Connection(url) as conn:
        queue = conn.SimpleQueue(QUEUE)
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.2)  # invisible while its fetcher may still be working on it
        again = queue.get(timeout=5)  # past the visibility timeout
        assert again.payload == "create request #1"
        again.ack()
    assert rows(url) == 0
    # The dead worker's connection goes without giving anything back (its process is gone),
    # rather than at garbage collection, after the test's files are.
    fetched.channel.qos._delivered.clear()
    dead.close()


def test_messages_given_back_at_shutdown_are_not_doubled(url: str) -> None:
    publish(url, "one")
    conn = Connection(url)
    queue = conn.SimpleQueue(QUEUE)
    queue.get(timeout=5)
    conn.close()  # a warm shutdown gives unacknowledged messages back
    assert rows(url) == 1
    with Connection(url) as again:
        message = again.SimpleQueue(QUEUE).get(timeout=5)
        assert message.payload == "one"
        message.ack()
    assert rows(url) == 0
