"""The rate limiters of this worker process (built lazily, so after fork)."""

from __future__ import annotations

import os

import redis

from core.ratelimit import LocalRateLimiter, RateLimiter, RateLimits, RedisRateLimiter
from core.settings import Settings, get_settings

_limiters: dict[tuple[int, bool, str | None, RateLimits], RateLimiter] = {}


def limits_of(settings: Settings, *, paid: bool = False) -> RateLimits:
    return RateLimits(
        bot_per_second=settings.paid_broadcast_per_second if paid else settings.rate_bot_per_second,
        private_per_second=settings.rate_private_per_second,
        private_burst=settings.rate_private_burst,
        group_per_minute=settings.rate_group_per_minute,
    )


def get_limiter(*, paid: bool = False) -> RateLimiter:
    """The shared limiter; paid broadcasts have their own bot-wide budget (and keys)."""
    settings = get_settings()
    limits = limits_of(settings, paid=paid)
    key = (os.getpid(), paid, settings.redis_url, limits)
    limiter = _limiters.get(key)
    if limiter is None:
        if settings.redis_url:
            prefix = "zavhoz:rl:paid:" if paid else "zavhoz:rl:"
            limiter = RedisRateLimiter(redis.Redis.from_url(settings.redis_url), limits, prefix)
        else:
            limiter = LocalRateLimiter(limits)
        _limiters[key] = limiter
    return limiter
