"""Every task has soft and hard time limits, and nothing parked on the broker outlives the
visibility timeout (Redis would hand it to a second worker while the first still holds it)."""

from __future__ import annotations

import pytest

from core.queues import queue_for
from core.settings import get_settings
from workers import app as celery_app
from workers import failures, timing


@pytest.fixture(scope="module")
def app() -> object:
    import workers.command_tasks
    import workers.maintenance_tasks
    import workers.notification_tasks  # noqa: F401

    return celery_app.app


def ours(app: object) -> dict[str, object]:
    tasks = app.tasks  # type: ignore[attr-defined]
    names = [n for n in tasks if not n.startswith("celery.")]
    return {n: tasks[n] for n in names if queue_for(n)}


def test_every_task_has_time_limits_under_the_visibility_timeout(app: object) -> None:
    tasks = ours(app)
    assert len(tasks) >= 18  # the commands, notifications and maintenance
    for name, task in tasks.items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit  # type: ignore[attr-defined]
        hard = task.time_limit or app.conf.task_time_limit  # type: ignore[attr-defined]
        assert soft and hard, name
        assert soft < hard < timing.VISIBILITY_TIMEOUT_S, name


def test_no_wait_parked_on_the_broker_outlives_the_visibility_timeout() -> None:
    longest_retry = max(failures.retry_delay(n) for n in range(failures.outage_retries()))
    assert longest_retry == get_settings().command_retry_cap_seconds
    worst = timing.HARD_TIME_LIMIT_S
    assert max(longest_retry, timing.MAX_PARKED_DELAY_S) < timing.VISIBILITY_TIMEOUT_S
    assert worst < timing.VISIBILITY_TIMEOUT_S
