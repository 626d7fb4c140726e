"""`zavhoz status` on embedded defaults: queues from the embedded broker's table with the age of
their oldest message, the outbox, the jobs; exit 1 and the reason when something is stale."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.clock import now
from core.settings import get_settings
from db.models import JobRun, Outbox
from zavhoz import status
from zavhoz.cli import main


def _relay_ran(db: Engine, ago: timedelta = timedelta(seconds=5)) -> None:
    with Session(db) as s:
        s.add(
            JobRun(
                job="maintenance.relay_outbox",
                started_at=now() - ago,
                duration_s=0.01,
                outcome="ok",
                counts={},
                runs=1,
                failures=0,
            )
        )
        s.commit()


def test_a_quiet_system_is_healthy(db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    _relay_ran(db)
    assert main(["status"]) == 0
    shown = capsys.readouterr().out
    assert "Healthy" in shown and "maintenance.relay_outbox" in shown
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [q["queue"] for q in data["queues"]] == [
        "interactive", "notifications", "reports", "privacy", "maintenance",
    ]  # fmt: skip
    assert data["workers"] is None and data["problems"] == []
    daily = next(j for j in data["jobs"] if j["job"] == "reports.daily")
    assert daily["last_started"] is None and daily["next_run"].endswith(":00+00:00")


def test_stale_work_and_a_silent_beat_make_it_unhealthy(
    db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    _relay_ran(db, ago=timedelta(minutes=10))
    with Session(db) as s:
        s.add(
            Outbox(
                dedupe_key="old",
                chat_id=5,
                method="sendMessage",
                payload={"text": "x"},
                state="pending",
                attempts=0,
                created_at=now() - timedelta(minutes=7),
            )
        )
        s.commit()
    assert main(["status", "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any(p.startswith("outbox: a message pending for 4") for p in problems), problems
    assert "beat: the relay job has not run for 120 s" in problems


def test_queue_depth_and_oldest_message_from_the_embedded_broker(db: Engine) -> None:
    get_settings().var_dir.mkdir(parents=True, exist_ok=True)  # `zavhoz up` makes it
    producer = Celery(
        "test-producer",
        broker=get_settings().broker_url,
        amqp="core.observability:RedactingAMQP",
        set_as_current=False,
    )
    producer.send_task("reports.daily", queue="reports")
    producer.send_task("reports.daily", queue="reports")
    _relay_ran(db)
    found = {q["queue"]: q for q in status.collect(300).queues}
    assert found["reports"]["depth"] == 2 and found["reports"]["oldest_s"] < 60
    assert found["interactive"] == {"queue": "interactive", "depth": 0, "oldest_s": None}
    later = status.collect(300, at=time.time() + 600)
    assert any(p.startswith("queue reports: oldest message waits") for p in later.problems)


def test_redis_down_is_one_line_and_unhealthy(
    db: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    get_settings.cache_clear()
    assert main(["status"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "Unhealthy: cannot reach Redis (ConnectionError)"
    assert main(["status", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "problems": ["cannot reach Redis (ConnectionError)"]
    }
