"""The send-rate limiter: both implementations, on a clock the tests move by hand.

`LocalRateLimiter` takes the clock; the Redis one reads Redis' TIME, which fakeredis takes from
`time.time()`, so that is patched (fakeredis' key expiry follows the same clock).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import fakeredis
import pytest

from core.ratelimit import (
    LocalRateLimiter,
    RateLimiter,
    RateLimits,
    RedisRateLimiter,
    limiter_from_url,
)
from sandbox.windows import busiest

MARGIN = RateLimits().window_margin
SECOND = 1.0 + MARGIN  # the bot-wide window
MINUTE = 60.0 + MARGIN  # a group's window
PRIVATE, OTHER, GROUP = 1001, 1002, -1001


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


@dataclass
class Env:
    kind: str
    clock: Clock
    server: fakeredis.FakeServer | None = None
    made: list[RateLimiter] = field(default_factory=list)

    def make(self, **limits: float) -> RateLimiter:
        rl = RateLimits(**limits)  # type: ignore[arg-type]
        limiter: RateLimiter
        if self.server is None:
            limiter = LocalRateLimiter(rl, clock=self.clock, sleep=self.clock.sleep)
        else:
            client = fakeredis.FakeRedis(server=self.server)
            limiter = RedisRateLimiter(client, rl, sleep=self.clock.sleep, monotonic=self.clock)
        self.made.append(limiter)
        return limiter

    def redis(self) -> fakeredis.FakeRedis:
        assert self.server is not None
        return fakeredis.FakeRedis(server=self.server, decode_responses=True)


@pytest.fixture(params=["local", "redis"])
def env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    clock = Clock()
    if request.param == "local":
        yield Env("local", clock)
        return
    monkeypatch.setattr(time, "time", clock)  # fakeredis' TIME and expiry
    yield Env("redis", clock, fakeredis.FakeServer())


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch) -> Env:
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    return Env("redis", clock, fakeredis.FakeServer())


def grants(limiter: RateLimiter, chats: list[int]) -> list[bool]:
    return [limiter.try_acquire(chat) == 0.0 for chat in chats]


def test_both_implement_the_protocol(env: Env) -> None:
    assert isinstance(env.make(), RateLimiter)


def test_grants_up_to_the_bot_limit_then_says_how_long_to_wait(env: Env) -> None:
    limiter = env.make(bot_per_second=3)
    assert grants(limiter, [1, 2, 3]) == [True, True, True]
    wait = limiter.try_acquire(4)
    assert wait == pytest.approx(SECOND, abs=1e-5)
    env.clock.advance(0.4)
    assert limiter.try_acquire(4) == pytest.approx(SECOND - 0.4, abs=1e-5)
    env.clock.advance(SECOND - 0.4)
    assert limiter.try_acquire(4) == 0.0


def test_the_bot_limit_holds_in_any_sliding_second(env: Env) -> None:
    """Not a token bucket: 30 granted, and the 31st waits until the oldest leaves the window."""
    limiter = env.make()
    assert limiter.try_acquire(1) == 0.0
    env.clock.advance(0.3)
    assert all(grants(limiter, list(range(2, 31))))
    assert limiter.try_acquire(31) == pytest.approx(SECOND - 0.3, abs=1e-5)
    env.clock.advance(SECOND - 0.3)
    assert limiter.try_acquire(31) == 0.0  # the first left; the other 29 are still in
    assert limiter.try_acquire(32) == pytest.approx(0.3, abs=1e-5)
    env.clock.advance(0.3)
    assert all(grants(limiter, list(range(32, 61))))
    assert limiter.try_acquire(61) == pytest.approx(SECOND - 0.3, abs=1e-5)  # the 31st's turn


def test_a_denied_chat_takes_no_bot_wide_slot(env: Env) -> None:
    limiter = env.make(bot_per_second=3, group_per_minute=2)
    assert grants(limiter, [GROUP, GROUP]) == [True, True]
    assert limiter.try_acquire(GROUP) == pytest.approx(MINUTE, abs=1e-5)
    assert limiter.try_acquire(GROUP) > 59
    assert limiter.try_acquire(PRIVATE) == 0.0  # the third bot slot was still free
    assert limiter.try_acquire(OTHER) == pytest.approx(SECOND, abs=1e-5)


def test_a_bot_wide_denial_takes_nothing_from_the_chat(env: Env) -> None:
    limiter = env.make(bot_per_second=1, private_per_second=0.1, private_burst=1)
    assert limiter.try_acquire(PRIVATE) == 0.0
    for _ in range(5):
        assert limiter.try_acquire(OTHER) == pytest.approx(SECOND, abs=1e-5)
    env.clock.advance(SECOND)
    assert limiter.try_acquire(OTHER) == 0.0  # its one token was never taken by the denials
    env.clock.advance(SECOND)
    assert limiter.try_acquire(OTHER) == pytest.approx(10 - SECOND, abs=1e-5)


def test_a_private_chat_bursts_then_sends_once_a_second(env: Env) -> None:
    limiter = env.make(bot_per_second=1000)
    assert grants(limiter, [PRIVATE] * 3) == [True, True, True]
    assert limiter.try_acquire(PRIVATE) == pytest.approx(1.0, abs=1e-5)
    assert limiter.try_acquire(OTHER) == 0.0  # chats are independent
    env.clock.advance(0.5)
    assert limiter.try_acquire(PRIVATE) == pytest.approx(0.5, abs=1e-5)
    env.clock.advance(0.5)
    assert grants(limiter, [PRIVATE, PRIVATE]) == [True, False]
    for _ in range(5):  # sustained: one a second
        env.clock.advance(1.0)
        assert grants(limiter, [PRIVATE, PRIVATE]) == [True, False]
    env.clock.advance(3.0)  # idle: the burst is back, no more
    assert grants(limiter, [PRIVATE] * 4) == [True, True, True, False]


def test_a_group_gets_20_a_minute_in_any_sliding_minute(env: Env) -> None:
    limiter = env.make()
    for _ in range(10):  # one every 2 s...
        assert limiter.try_acquire(GROUP) == 0.0
        env.clock.advance(2.0)
    assert all(grants(limiter, [GROUP] * 10))  # ...then ten at t=20
    wait = limiter.try_acquire(GROUP)
    assert wait == pytest.approx(MINUTE - 20.0, abs=1e-5)
    assert limiter.try_acquire(-2002) == 0.0  # another group is not affected
    env.clock.advance(wait)
    assert limiter.try_acquire(GROUP) == 0.0
    assert limiter.try_acquire(GROUP) == pytest.approx(2.0, abs=1e-5)


def test_pause_stops_every_chat_and_never_shortens(env: Env) -> None:
    limiter = env.make()
    assert limiter.paused_for() == 0.0
    limiter.pause(0)
    limiter.pause(-1)
    assert limiter.paused_for() == 0.0
    limiter.pause(5)
    limiter.pause(2)  # a shorter retry_after must not cut the longer one
    assert limiter.paused_for() == pytest.approx(5.0, abs=1e-3)
    assert limiter.try_acquire(PRIVATE) == pytest.approx(5.0, abs=1e-3)
    assert limiter.try_acquire(GROUP) == pytest.approx(5.0, abs=1e-3)
    env.clock.advance(4.0)
    assert limiter.paused_for() == pytest.approx(1.0, abs=1e-3)
    limiter.pause(3)  # a longer one extends
    assert limiter.paused_for() == pytest.approx(3.0, abs=1e-3)
    env.clock.advance(3.0)
    assert limiter.paused_for() == 0.0
    assert limiter.try_acquire(PRIVATE) == 0.0


def test_the_pause_is_shared_by_every_limiter_on_the_same_redis(redis_env: Env) -> None:
    first, second = redis_env.make(), redis_env.make()
    first.pause(7)
    assert second.paused_for() == pytest.approx(7.0, abs=1e-3)
    assert second.try_acquire(PRIVATE) == pytest.approx(7.0, abs=1e-3)
    redis_env.clock.advance(7.0)
    assert second.try_acquire(PRIVATE) == 0.0


def test_limits_are_shared_by_every_limiter_on_the_same_redis(redis_env: Env) -> None:
    a, b = redis_env.make(bot_per_second=4), redis_env.make(bot_per_second=4)
    assert grants(a, [1, 2]) == [True, True]
    assert grants(b, [3, 4]) == [True, True]
    assert a.try_acquire(5) > 0 and b.try_acquire(5) > 0
    assert grants(b, [GROUP]) == [False]


def test_two_sends_in_the_same_microsecond_count_twice(redis_env: Env) -> None:
    limiter = redis_env.make(bot_per_second=2)  # the clock does not move at all
    assert grants(limiter, [1, 2, 3]) == [True, True, False]
    assert grants(limiter, [GROUP]) == [False]
    client = redis_env.redis()
    assert client.zcard("zavhoz:rl:bot") == 2


def test_keys_expire_when_their_state_is_back_to_fresh(redis_env: Env) -> None:
    limiter = redis_env.make()
    client = redis_env.redis()
    assert grants(limiter, [PRIVATE, PRIVATE, GROUP]) == [True, True, True]
    ttl = {key: client.pttl(key) for key in client.keys("*")}
    assert set(ttl) == {"zavhoz:rl:bot", f"zavhoz:rl:chat:{PRIVATE}", f"zavhoz:rl:chat:{GROUP}"}
    assert 1000 <= ttl["zavhoz:rl:bot"] <= 1000 * SECOND + 2
    assert 1900 <= ttl[f"zavhoz:rl:chat:{PRIVATE}"] <= 2002  # two tokens to refill
    assert 60_000 <= ttl[f"zavhoz:rl:chat:{GROUP}"] <= 1000 * MINUTE + 2
    limiter.pause(1)
    redis_env.clock.advance(2.1)
    assert client.keys("*") == [f"zavhoz:rl:chat:{GROUP}"]
    redis_env.clock.advance(MINUTE)
    assert client.keys("*") == []
    assert grants(limiter, [PRIVATE] * 4) == [True, True, True, False]  # as fresh


def test_a_custom_prefix_keeps_limiters_apart(redis_env: Env) -> None:
    client = redis_env.redis()  # decoded responses work as well
    a = RedisRateLimiter(client, RateLimits(bot_per_second=1), prefix="a:")
    b = RedisRateLimiter(client, RateLimits(bot_per_second=1), prefix="b:")
    assert grants(a, [1, 2]) == [True, False]
    assert grants(b, [1, 2]) == [True, False]
    assert {str(k).split(":")[0] for k in client.keys("*")} == {"a", "b"}


def test_the_local_limiter_forgets_idle_chats() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(clock=clock)
    for chat in range(1, 21):
        assert limiter.try_acquire(chat) == 0.0
    assert limiter.try_acquire(GROUP) == 0.0
    assert limiter.tracked_chats() == 21
    clock.advance(120)
    assert limiter.try_acquire(PRIVATE) == 0.0
    assert limiter.tracked_chats() == 1


def test_acquire_sleeps_the_returned_waits(env: Env) -> None:
    limiter = env.make()
    assert limiter.acquire(PRIVATE) is True
    assert env.clock.slept == []
    for _ in range(2):
        assert limiter.acquire(PRIVATE) is True
    assert limiter.acquire(PRIVATE) is True  # burst spent: waits about one second
    assert 1.0 <= sum(env.clock.slept) <= 1.01
    limiter.pause(30)
    assert limiter.acquire(OTHER) is True
    assert 31.0 <= sum(env.clock.slept) <= 31.1


def test_acquire_gives_up_when_the_wait_ends_past_the_timeout(env: Env) -> None:
    limiter = env.make()
    limiter.pause(10)
    assert limiter.acquire(PRIVATE, timeout=5) is False
    assert limiter.acquire(PRIVATE, timeout=0) is False
    assert env.clock.slept == []  # known at once: no slot frees before the pause ends
    assert limiter.acquire(PRIVATE, timeout=11) is True
    assert 10.0 <= sum(env.clock.slept) <= 10.6


@pytest.mark.parametrize("seed", [1, 2])
def test_random_traffic_never_breaks_a_limit(env: Env, seed: int) -> None:
    """Many chats, random arrivals: every sliding window and bucket holds, and the bot-wide
    limit is reached (near 30/s are granted)."""
    rng = random.Random(seed)
    limiter = env.make(group_per_minute=5)  # so that the group limit binds too
    chats = [*range(1, 40), *range(-8, 0)]
    granted: list[tuple[float, int]] = []
    start = env.clock.now
    while env.clock.now - start < 6.0:
        chat = rng.choice(chats)
        if limiter.try_acquire(chat) == 0.0:
            granted.append((env.clock.now, chat))
        env.clock.advance(rng.expovariate(200.0))
    times = [t for t, _ in granted]
    assert busiest(times, 1.0) <= 30
    assert len(times) >= 0.95 * 30 * 6 / SECOND - 30
    for chat in chats:
        mine = [t for t, c in granted if c == chat]
        if chat < 0:
            assert busiest(mine, 60.0) <= 5
        else:
            assert busiest(mine, 1.0) <= 3
            assert busiest(mine, 3.0) <= 5  # burst 3, then one a second


def test_the_local_limiter_is_thread_safe() -> None:
    limiter = LocalRateLimiter(RateLimits(bot_per_second=50), clock=lambda: 100.0)
    results: list[float] = []
    lock = threading.Lock()

    def worker(base: int) -> None:
        for i in range(40):
            wait = limiter.try_acquire(base + i)
            with lock:
                results.append(wait)

    threads = [threading.Thread(target=worker, args=(1000 * n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(0.0) == 50


def test_real_time_acquire_paces_a_chat() -> None:
    """No fake clock: real sleeps, short waits, generous bounds."""
    for limiter in (
        LocalRateLimiter(RateLimits(private_per_second=50, private_burst=1)),
        RedisRateLimiter(fakeredis.FakeRedis(), RateLimits(private_per_second=50, private_burst=1)),
    ):
        began = time.monotonic()
        assert all(limiter.acquire(PRIVATE, timeout=5) for _ in range(6))
        assert 0.09 <= time.monotonic() - began < 2.0  # five waits of 20 ms


@pytest.mark.parametrize(
    "bad",
    [
        {"bot_per_second": 0},
        {"private_per_second": 0},
        {"private_burst": 0},
        {"group_per_minute": 0},
        {"window_margin": -0.1},
    ],
)
def test_limits_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimits(**bad)  # type: ignore[arg-type]


def test_limiter_from_url_picks_by_the_presence_of_redis() -> None:
    limits = RateLimits(bot_per_second=7)
    local = limiter_from_url(None, limits)
    assert isinstance(local, LocalRateLimiter) and local.limits == limits
    shared = limiter_from_url("redis://127.0.0.1:1/13", limits)  # connects lazily
    assert isinstance(shared, RedisRateLimiter) and shared.limits == limits
    shared.client.close()
