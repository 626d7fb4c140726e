"""The redelivery cap: a message that keeps coming back (it kills its worker) is dropped."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from workers import redelivery


def test_counts_per_task_and_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redelivery, "_local_counts", {})
    assert [redelivery.count_delivery("t1:0") for _ in range(3)] == [1, 2, 3]
    assert redelivery.count_delivery("t1:1") == 1  # a Celery retry is not a redelivery


def test_counts_in_redis_are_shared_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    import fakeredis

    server = fakeredis.FakeServer()
    monkeypatch.setattr(redelivery, "_redis", lambda: fakeredis.FakeRedis(server=server))
    assert redelivery.count_delivery("t2:0") == 1
    assert redelivery.count_delivery("t2:0") == 2  # another process sees the same count
    ttl = fakeredis.FakeRedis(server=server).ttl("zavhoz:deliveries:t2:0")
    assert 0 < ttl <= 24 * 3600


@pytest.mark.usefixtures("db", "inproc_worker")
def test_a_message_delivered_past_the_cap_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import get_settings
    from workers.notification_tasks import deliver

    monkeypatch.setattr(redelivery, "_local_counts", {})
    cap = get_settings().max_redeliveries
    with capture_logs() as logs:
        for _ in range(cap + 3):  # the same message (same task id) comes back again and again
            deliver.apply_async(args=([],), task_id="poison-1")
        deadline = time.monotonic() + 10
        counts = redelivery._local_counts
        while time.monotonic() < deadline and counts.get("poison-1:0", 0) < cap + 3:
            time.sleep(0.05)
    dropped = [e for e in logs if e["event"] == "task.poison_message_dropped"]
    assert redelivery._local_counts["poison-1:0"] == cap + 3
    assert len(dropped) == 2  # deliveries cap+2 and cap+3: the first plus `cap` redeliveries ran
