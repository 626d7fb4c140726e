"""`zavhoz status` against real Redis and a real worker: the workers Celery's remote control
finds, with their queues; a queue nobody consumes and its waiting message make it exit 1."""

from __future__ import annotations

import json

from celery import Celery

from tests.support.processes import Processes, zavhoz_cli


def test_status_sees_workers_queues_and_what_waits(procs: Processes, redis_url: str) -> None:
    worker = procs.start(
        "wi", "worker", "-Q", "interactive", "--", "-n", "wi@%h", "--without-mingle"
    )
    worker.wait_for_log("ready.")
    producer = Celery(
        "test-producer",
        broker=redis_url,
        amqp="core.observability:RedactingAMQP",
        set_as_current=False,
    )
    producer.send_task("reports.daily", queue="reports", expires=600)

    done = zavhoz_cli(procs.env, "status", "--json", "--max-age", "0")
    assert done.returncode == 1, done.stderr[-3000:]
    data = json.loads(done.stdout)
    [seen] = data["workers"]
    assert seen["name"].startswith("wi@") and seen["queues"] == ["interactive"]
    assert seen["pool"] and seen["uptime_s"] is not None
    reports = next(q for q in data["queues"] if q["queue"] == "reports")
    assert reports["depth"] == 1 and reports["oldest_s"] is not None
    problems = data["problems"]
    assert "queue reports: no worker consumes it" in problems
    assert "queue interactive: no worker consumes it" not in problems
    assert any(p.startswith("queue reports: oldest message waits") for p in problems)
    assert data["beat_lock"] == "free: no beat holds it"
