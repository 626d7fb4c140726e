"""The Redis rate limiter holds the bot-wide limit across OS processes (real Redis, db 13)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import pytest
import redis

from core.ratelimit import RateLimits, RedisRateLimiter
from sandbox.windows import busiest

REDIS_DB = 13  # this test's own database, flushed before and after
PROCESSES = 4
DURATION_S = 3.0
LIMIT = RateLimits().bot_per_second


@pytest.fixture
def redis_db13() -> Iterator[str]:
    # Imported here, not at the top: every spawned process imports this module, and the
    # service fixtures pull in half the project.
    from tests.support.services import clean_redis_db

    with clean_redis_db(REDIS_DB) as url:
        yield url


def send_loop(
    url: str, worker: int, ready: Queue[int], go: Event, out: Queue[tuple[int, list[float]]]
) -> None:
    """One worker process: acquire for ever new private chats for DURATION_S from `go`."""
    limiter = RedisRateLimiter(redis.Redis.from_url(url))
    limiter.paused_for()  # connected before the start
    ready.put(worker)
    go.wait()
    stop = time.time() + DURATION_S
    granted: list[float] = []
    chat = worker * 1_000_000
    while True:
        chat += 1  # distinct private chats: only the bot-wide limit binds
        if not limiter.acquire(chat, timeout=max(0.0, stop - time.time())):
            break
        now = time.time()
        if now >= stop:
            break
        granted.append(now)
    out.put((worker, granted))


def test_four_processes_share_30_per_second(redis_db13: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready: Queue[int] = ctx.Queue()
    out: Queue[tuple[int, list[float]]] = ctx.Queue()
    go = ctx.Event()
    workers = [
        ctx.Process(target=send_loop, args=(redis_db13, n, ready, go, out), daemon=True)
        for n in range(1, PROCESSES + 1)
    ]
    for process in workers:
        process.start()
    try:
        for _ in workers:
            ready.get(timeout=60)
        started = time.time()
        go.set()
        per_worker = [grants for _, grants in (out.get(timeout=30) for _ in workers)]
    finally:
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    times = sorted(t for grants in per_worker for t in grants)
    middle = [t for t in times if started + 0.5 <= t < started + DURATION_S - 0.5]
    rate = len(middle) / (DURATION_S - 1.0)
    peak = busiest(times)
    print(
        f"\n{len(times)} grants in {DURATION_S} s by {PROCESSES} processes "
        f"{sorted(len(g) for g in per_worker)}: busiest 1 s window {peak}, "
        f"middle rate {rate:.2f}/s"
    )
    assert all(per_worker), "every process got some sends"
    assert peak <= LIMIT, f"{peak} sends in one second across {PROCESSES} processes"
    assert rate >= 0.9 * LIMIT, f"only {rate:.1f}/s of {LIMIT}/s"
