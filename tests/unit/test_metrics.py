"""What the metrics count, in process: sends by outcome, the end-to-end latency of a command,
the limiter's wait, the backlog gauges; a taken port is skipped; who serves where is known.
(Multiprocess mode and several processes on one host: tests/e2e/test_metrics.py.)"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from core import metrics as m
from core.clock import now
from core.commands import Actor, RegisterUser, idempotency_key
from core.settings import get_settings
from db.session import session_scope
from tests.support.follow_ups import run_follow_ups_inline
from tests.support.sandbox_api import SandboxAPI
from workers import outbox
from workers.backlog import BacklogCollector
from workers.command_tasks import run_command
from workers.welcome import register_user

USER = 1001


def sample(name: str, **labels: str) -> float:
    return m.registry().get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True)
def inline_follow_ups(monkeypatch: pytest.MonkeyPatch) -> None:
    run_follow_ups_inline(monkeypatch)


def start(update_id: int, issued_ago_s: float | None = None) -> RegisterUser:
    return RegisterUser(
        idempotency_key=idempotency_key(update_id),
        actor=Actor(user_id=USER, chat_id=USER),
        issued_at=None if issued_ago_s is None else now() - timedelta(seconds=issued_ago_s),
    )


def write(chat_id: int, key: str) -> int:
    with session_scope() as session:
        row = outbox.Replies(session, key).message(chat_id, "hello")
        session.flush()
        return row.id


def test_a_command_counts_its_latency_once_and_its_send(db: Engine, sandbox: SandboxAPI) -> None:
    sandbox.send_text(USER, "/start")
    latency = "zavhoz_command_latency_seconds_count"
    labels = {"command": "commands.register_user"}
    before = (sample(latency, **labels), sample("zavhoz_outbox_sends_total", outcome="sent"))
    before_sum = sample("zavhoz_command_latency_seconds_sum", **labels)
    waits = sample("zavhoz_limiter_wait_seconds_count")

    run_command(start(1, issued_ago_s=2.0), register_user)
    assert sample(latency, **labels) == before[0] + 1
    # From the bot's receipt: the two seconds before the worker took it are in it.
    assert sample("zavhoz_command_latency_seconds_sum", **labels) - before_sum >= 2.0
    assert sample("zavhoz_outbox_sends_total", outcome="sent") == before[1] + 1
    assert sample("zavhoz_limiter_wait_seconds_count") == waits + 1

    run_command(start(1, issued_ago_s=2.0), register_user)  # a redelivery: nothing new
    assert sample(latency, **labels) == before[0] + 1


def test_a_reply_that_did_not_go_counts_no_latency(db: Engine, sandbox: SandboxAPI) -> None:
    sandbox.send_text(USER, "/start")
    sandbox.fault("5xx", count=1, status=502)
    labels = {"command": "commands.register_user"}
    before = sample("zavhoz_command_latency_seconds_count", **labels)
    errors = sample("zavhoz_outbox_sends_total", outcome="5xx")
    run_command(start(2, issued_ago_s=0.1), register_user)
    assert sample("zavhoz_command_latency_seconds_count", **labels) == before
    assert sample("zavhoz_outbox_sends_total", outcome="5xx") == errors + 1


@pytest.mark.parametrize(
    ("fault", "options", "outcome"),
    [
        ("429", {"retry_after": 1}, "429"),
        ("429bare", {}, "429"),
        ("403", {}, "403"),
        ("5xx", {"status": 500}, "5xx"),
        ("html5xx", {}, "5xx"),  # a proxy's error page is a server's failure too
        ("drop", {}, "network"),
    ],
)
def test_sends_are_counted_by_outcome(
    db: Engine, sandbox: SandboxAPI, fault: str, options: dict[str, object], outcome: str
) -> None:
    sandbox.send_text(USER, "/start")
    sandbox.fault(fault, count=1, **options)
    before = sample("zavhoz_outbox_sends_total", outcome=outcome)
    outbox.deliver([write(USER, f"test:{fault}")])
    assert sample("zavhoz_outbox_sends_total", outcome=outcome) == before + 1


def test_a_message_telegram_refuses_counts_as_400(db: Engine, sandbox: SandboxAPI) -> None:
    before = sample("zavhoz_outbox_sends_total", outcome="400")
    outbox.deliver([write(987654, "test:nowhere")])  # a chat the sandbox does not know
    assert sample("zavhoz_outbox_sends_total", outcome="400") == before + 1


def test_the_backlog_collector_reads_queues_outbox_and_jobs(db: Engine) -> None:
    write(USER, "test:waiting")
    served = CollectorRegistry()
    served.register(BacklogCollector(consumes=["interactive"]))
    got = served.get_sample_value
    assert got("zavhoz_backlog_up") == 1
    assert got("zavhoz_worker_consumes", {"queue": "interactive"}) == 1
    assert got("zavhoz_worker_consumes", {"queue": "reports"}) is None
    assert got("zavhoz_outbox_rows", {"state": "pending"}) == 1
    assert got("zavhoz_outbox_rows", {"state": "sent"}) == 0
    assert got("zavhoz_queue_depth", {"queue": "interactive"}) == 0
    assert got("zavhoz_dead_letters_waiting") == 0
    assert (got("zavhoz_outbox_oldest_pending_seconds") or 0) >= 0


def test_the_backlog_collector_says_when_the_database_is_down(tmp_path: Path) -> None:
    served = CollectorRegistry()
    served.register(BacklogCollector())
    # No migrated database here: the scrape answers, and says the backlog is unknown.
    assert served.get_sample_value("zavhoz_backlog_up") == 0
    assert served.get_sample_value("zavhoz_outbox_rows", {"state": "pending"}) is None


def test_a_taken_port_is_skipped() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = CollectorRegistry()
        got = m._serve(served, "127.0.0.1", port)
        try:
            assert port < got < port + m.PORT_SPAN
            with urllib.request.urlopen(f"http://127.0.0.1:{got}/metrics", timeout=5) as r:
                assert r.status == 200
        finally:
            got_server = m._servers.pop()
            got_server.shutdown()
            got_server.server_close()


def test_endpoints_embedded_are_files_of_live_processes(tmp_path: Path) -> None:
    settings = get_settings()
    alive = m.Endpoint("worker", "here", 9100, os.getpid(), 1.0)
    m._announce(settings, alive)
    gone = settings.var_dir / "metrics" / "9101.json"
    gone.write_text(json.dumps({**alive.__dict__, "port": 9101, "pid": 2**22 + 7}))
    assert m.endpoints(settings) == [alive]
    assert alive.url == "http://here:9100/metrics"


def test_unset_port_serves_nothing() -> None:
    assert get_settings().metrics_port is None
    assert m.setup(get_settings(), "worker") is None


@pytest.mark.usefixtures("inproc_worker")
def test_tasks_are_counted_by_name_and_outcome_with_their_duration(
    db: Engine, sandbox: SandboxAPI
) -> None:
    from workers.app import app

    name = RegisterUser.task_name
    before = sample("zavhoz_tasks_total", task=name, outcome="success")
    timed = sample("zavhoz_task_duration_seconds_count", task=name)
    sandbox.send_text(7301, "/start")
    command = RegisterUser(
        idempotency_key=idempotency_key(7301), actor=Actor(user_id=7301, chat_id=7301)
    )
    app.send_task(name, kwargs=command.to_kwargs())
    sandbox.wait_messages(7301, 1)
    deadline = time.monotonic() + 10
    while sample("zavhoz_tasks_total", task=name, outcome="success") == before:
        assert time.monotonic() < deadline, "the task was not counted"
        time.sleep(0.05)
    assert sample("zavhoz_task_duration_seconds_count", task=name) >= timed + 1
