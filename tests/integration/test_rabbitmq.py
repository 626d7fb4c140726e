"""RabbitMQ as the broker (BROKER_URL=amqp://...), Redis still the dialog store and limiter:
durable queues and publisher confirms as configured, a real worker seen by `zavhoz status`,
and each queue's depth read by a passive declare. (The lifecycle and the broadcast fault test
run on RabbitMQ too in CI: ZAVHOZ_TEST_BROKER=amqp.)"""

from __future__ import annotations

import json

from celery import Celery

from core.settings import Settings
from tests.support.processes import Processes, zavhoz_cli
from workers.app import create_app


def test_the_app_on_rabbitmq_confirms_publishes_and_keeps_queues_durable(
    amqp_url: str, redis_url: str
) -> None:
    app = create_app(Settings(REDIS_URL=redis_url, BROKER_URL=amqp_url))
    assert app.conf.broker_url == amqp_url
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    assert all(q.durable for q in app.conf.task_queues)
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is True


def test_status_on_rabbitmq_sees_workers_and_depths(procs: Processes, amqp_url: str) -> None:
    procs.env["BROKER_URL"] = amqp_url
    procs.worker("wi", "-Q", "interactive")
    producer = Celery(
        "test-producer",
        broker=amqp_url,
        amqp="core.observability:RedactingAMQP",
        set_as_current=False,
    )
    producer.conf.broker_transport_options = {"confirm_publish": True}
    for _ in range(3):
        producer.send_task("reports.daily", queue="reports", expires=600)

    done = zavhoz_cli(procs.env, "status", "--json")
    data = json.loads(done.stdout)
    [seen] = data["workers"]
    assert seen["name"].startswith("wi@") and seen["queues"] == ["interactive"]
    depths = {q["queue"]: q["depth"] for q in data["queues"]}
    assert depths["reports"] == 3 and depths["interactive"] == 0
    assert "queue reports: no worker consumes it" in data["problems"]
    assert done.returncode == 1
