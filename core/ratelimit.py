"""The global Telegram send-rate limiter shared by every worker process.

Telegram allows about 30 messages a second per bot, 1 a second per private chat (short bursts
tolerated) and 20 a minute per group, and answers 429 with `retry_after` above that. Celery's
`rate_limit` is per worker process, so the limits are held here instead:

- `RedisRateLimiter`: one Lua script per send decides atomically for all processes on all
  machines, with the time taken from Redis (`TIME`) so worker clocks do not matter;
- `LocalRateLimiter`: the same rules in process memory for embedded defaults (no Redis). It only
  limits the process it lives in, so embedded deployments must send from one worker process.

Algorithms (the same in both):

- bot-wide and per group: a sliding-window log, the grant times of the last window kept in a
  sorted set (at most `limit` members) and trimmed on every call. It holds "at most N in ANY
  sliding window" exactly, which a token bucket does not (a full bucket of 30 plus 30 refilled
  during the next second lets 60 through in about a second). GCRA without burst would hold it
  too, but it spaces grants exactly 1/N apart and every grant taken late (a waiter waking up a
  little after its turn, as processes contending over the network always do) is capacity lost
  for good; the log lets a late grant use any slot freed in the last window, so contending
  workers still reach the full rate. Memory is bounded by the limit (30, 20 members) and the
  wait is exact: the time until the oldest grant in the window leaves it.
- per private chat: a token bucket of `private_burst` tokens refilled at `private_per_second`,
  stored as GCRA (one number: the theoretical arrival time) — the same decisions as the bucket,
  one key and no separate refill timestamp.

The windows are `window_margin` longer than nominal (1 s -> 1.01 s by default): a grant is only
the start of a send, and scheduling and network jitter between the grant and Telegram's receipt
must not squeeze N+1 sends into Telegram's second. It costs about 1% of throughput.

Every key expires (PEXPIRE) when its state would be the same as no key at all, so idle chats
cost nothing. For Redis Cluster, give a prefix with a hash tag (e.g. "{zavhoz:rl}:") so one
script's keys share a slot.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import redis

# Sleep a little more than the returned wait, so waiters of the same slot do not all wake at
# once; small against a slot (1/30 s) so the rate does not suffer.
JITTER_MAX_S = 0.004
JITTER_FRACTION = 0.05
_LOCAL_SWEEP_S = 60.0


@dataclass(frozen=True)
class RateLimits:
    bot_per_second: int = 30  # global: at most this many sends in ANY sliding 1 s window
    private_per_second: float = 1.0  # per private chat (chat_id > 0): sustained rate
    private_burst: int = 3  # per private chat: short burst allowed
    group_per_minute: int = 20  # per group chat (chat_id < 0): at most this many in any 60 s
    # Added to both sliding windows (seconds): absorbs jitter between a grant and its delivery.
    window_margin: float = field(default=0.01)

    def __post_init__(self) -> None:
        if self.bot_per_second < 1 or self.private_burst < 1 or self.group_per_minute < 1:
            raise ValueError("rate limits must allow at least one send")
        if not self.private_per_second > 0:
            raise ValueError("private_per_second must be positive")
        if not 0 <= self.window_margin < 1:
            raise ValueError("window_margin must be in [0, 1) seconds")

    @property
    def bot_window(self) -> float:
        return 1.0 + self.window_margin

    @property
    def group_window(self) -> float:
        return 60.0 + self.window_margin

    @property
    def private_interval(self) -> float:
        return 1.0 / self.private_per_second


def is_group(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; anything else counts as private."""
    return chat_id < 0


@runtime_checkable
class RateLimiter(Protocol):
    def try_acquire(self, chat_id: int) -> float:
        """Take one send slot for this chat: both the bot-wide and the chat's limit, atomically
        (either both are taken or neither). Returns 0.0 when granted, else the seconds to wait
        before it can be granted (nothing taken)."""
        ...

    def acquire(self, chat_id: int, *, timeout: float | None = None) -> bool:
        """Block (sleeping the returned waits, with a little jitter) until granted; False on
        timeout, returned at once when the wait already ends past it."""
        ...

    def pause(self, seconds: float) -> None:
        """Telegram said 429 retry_after: every worker stops sending for this long (shared)."""
        ...

    def paused_for(self) -> float:
        """Seconds left of a pause (0.0 if none); try_acquire also honours it."""
        ...


class _Blocking:
    """`acquire` on top of `try_acquire`: sleep the returned waits until granted or out of time."""

    _sleep: Callable[[float], None]
    _monotonic: Callable[[], float]

    def try_acquire(self, chat_id: int) -> float:
        raise NotImplementedError

    def acquire(self, chat_id: int, *, timeout: float | None = None) -> bool:
        """Block until granted; False as soon as the wait would end past `timeout` seconds.

        A returned wait is a lower bound (no slot frees earlier), so a wait beyond the deadline
        means a timeout now rather than after sleeping for nothing.
        """
        deadline = None if timeout is None else self._monotonic() + timeout
        while True:
            wait = self.try_acquire(chat_id)
            if wait <= 0.0:
                return True
            if deadline is not None and self._monotonic() + wait > deadline:
                return False
            jitter = random.uniform(0.0, min(JITTER_MAX_S, wait * JITTER_FRACTION))  # noqa: S311
            self._sleep(wait + jitter)


# KEYS: 1 pause flag, 2 bot-wide window (zset), 3 the chat's state (zset for a group, GCRA
#   theoretical arrival time for a private chat).
# ARGV: 1 unique member suffix, 2 bot limit, 3 bot window (us), 4 'g' (group) or 'p' (private),
#   5/6 group: limit, window (us); private: emission interval (us), burst tolerance (us).
# Returns 0 when granted (everything recorded), else the wait in microseconds (nothing written
#   but the trimming of expired grants). Times are integer microseconds of Redis' TIME: exact in
#   a Lua number (< 2^53) and written with %.17g, never Lua's lossy default formatting.
_ACQUIRE_LUA = """
local function num(x) return string.format('%.17g', x) end

local paused = redis.call('PTTL', KEYS[1])
if paused > 0 then return paused * 1000 end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- The wait until the window `key` (at most `limit` grants in `window`) has room; 0 if it has.
local function window_wait(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - window))
  local n = redis.call('ZCARD', key)
  if n < limit then return 0 end
  local oldest = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end

local bot_limit, bot_window = tonumber(ARGV[2]), tonumber(ARGV[3])
local group = ARGV[4] == 'g'
local a, b = tonumber(ARGV[5]), tonumber(ARGV[6])

local wait = window_wait(KEYS[2], bot_limit, bot_window)
local tat = now
if group then
  wait = math.max(wait, window_wait(KEYS[3], a, b))
else
  local stored = redis.call('GET', KEYS[3])
  if stored then tat = math.max(tonumber(stored), now) end
  wait = math.max(wait, tat - b - now)
end
if wait > 0 then return math.max(1, math.ceil(wait)) end

local member = num(now) .. ':' .. ARGV[1]
redis.call('ZADD', KEYS[2], num(now), member)
redis.call('PEXPIRE', KEYS[2], math.ceil(bot_window / 1000) + 1)
if group then
  redis.call('ZADD', KEYS[3], num(now), member)
  redis.call('PEXPIRE', KEYS[3], math.ceil(b / 1000) + 1)
else
  tat = tat + a
  redis.call('SET', KEYS[3], num(tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return 0
"""

# A pause only ever lengthens: a short retry_after must not cut a longer one short.
_PAUSE_LUA = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 0
"""

_US = 1_000_000


class RedisRateLimiter(_Blocking):
    """The limits held for all processes sharing `client`'s Redis: one round trip per call."""

    def __init__(
        self,
        client: redis.Redis,
        limits: RateLimits = RateLimits(),
        prefix: str = "zavhoz:rl:",
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.limits = limits
        self.prefix = prefix
        self._sleep = sleep
        self._monotonic = monotonic
        self._pause_key = prefix + "pause"
        self._bot_key = prefix + "bot"
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._pause = client.register_script(_PAUSE_LUA)
        self._bot_args = (limits.bot_per_second, round(limits.bot_window * _US))
        self._group_args = ("g", limits.group_per_minute, round(limits.group_window * _US))
        interval = limits.private_interval * _US
        self._private_args = ("p", round(interval), round(interval * (limits.private_burst - 1)))

    def chat_key(self, chat_id: int) -> str:
        return f"{self.prefix}chat:{chat_id}"

    def try_acquire(self, chat_id: int) -> float:
        chat_args = self._group_args if is_group(chat_id) else self._private_args
        wait_us = self._acquire(
            keys=[self._pause_key, self._bot_key, self.chat_key(chat_id)],
            args=[os.urandom(8).hex(), *self._bot_args, *chat_args],
        )
        return int(wait_us) / _US

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._pause(keys=[self._pause_key], args=[math.ceil(seconds * 1000)])

    def paused_for(self) -> float:
        ms = int(self.client.pttl(self._pause_key))
        return ms / 1000 if ms > 0 else 0.0


@dataclass
class _Chat:
    grants: deque[float] = field(default_factory=deque)  # a group's window
    tat: float = 0.0  # a private chat's theoretical arrival time (GCRA)
    idle_at: float = 0.0  # from then on the state equals a fresh one


class LocalRateLimiter(_Blocking):
    """The same limits within this process (embedded defaults, tests); thread-safe."""

    def __init__(
        self,
        limits: RateLimits = RateLimits(),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._monotonic = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._bot: deque[float] = deque()
        self._chats: dict[int, _Chat] = {}
        self._paused_until = -math.inf
        self._next_sweep = -math.inf

    @staticmethod
    def _window_wait(grants: deque[float], limit: int, window: float, now: float) -> float:
        while grants and grants[0] <= now - window:
            grants.popleft()
        if len(grants) < limit:
            return 0.0
        return grants[len(grants) - limit] + window - now

    def try_acquire(self, chat_id: int) -> float:
        limits = self.limits
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            self._sweep(now)
            chat = self._chats.get(chat_id) or _Chat()
            wait = self._window_wait(self._bot, limits.bot_per_second, limits.bot_window, now)
            tat = max(chat.tat, now)
            if is_group(chat_id):
                g = self._window_wait(
                    chat.grants, limits.group_per_minute, limits.group_window, now
                )
                wait = max(wait, g)
            else:
                tolerance = limits.private_interval * (limits.private_burst - 1)
                wait = max(wait, tat - tolerance - now)
            if wait > 0:
                return max(wait, 1e-6)
            self._bot.append(now)
            if is_group(chat_id):
                chat.grants.append(now)
                chat.idle_at = now + limits.group_window
            else:
                chat.tat = tat + limits.private_interval
                chat.idle_at = chat.tat
            self._chats[chat_id] = chat
            return 0.0

    def _sweep(self, now: float) -> None:
        """Forget chats whose state has gone back to fresh, so idle chats cost nothing."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _LOCAL_SWEEP_S
        for chat_id in [c for c, chat in self._chats.items() if chat.idle_at <= now]:
            del self._chats[chat_id]

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._paused_until = max(self._paused_until, self._clock() + seconds)

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    def tracked_chats(self) -> int:
        """How many chats hold state (for tests and metrics)."""
        with self._lock:
            return len(self._chats)


def limiter_from_url(redis_url: str | None, limits: RateLimits) -> RateLimiter:
    """The shared Redis limiter when there is Redis, else the in-process one."""
    if redis_url:
        return RedisRateLimiter(redis.Redis.from_url(redis_url), limits)
    return LocalRateLimiter(limits)
