"""A cap on redeliveries: with acks_late, a message that kills its worker comes back forever.

Counted per (task id, retry number) in Redis, so Celery's own retries are not redeliveries.
On embedded defaults (one machine, no Redis) the count is per process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Task
from redis.exceptions import RedisError

from core.logging import get_logger
from core.settings import get_settings

log = get_logger(__name__)

_COUNTER_TTL_S = 24 * 3600
_local_counts: dict[str, int] = {}


@lru_cache(maxsize=1)
def _redis() -> Any:
    url = get_settings().redis_url
    if url is None:
        return None
    import redis

    # Timeouts: a Redis that hangs must not hold every task at its start.
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)


def count_delivery(key: str) -> int:
    client = _redis()
    if client is None:
        _local_counts[key] = _local_counts.get(key, 0) + 1
        return _local_counts[key]
    pipe = client.pipeline()
    pipe.incr(f"zavhoz:deliveries:{key}")
    pipe.expire(f"zavhoz:deliveries:{key}", _COUNTER_TTL_S)
    count, _ = pipe.execute()
    return int(count)


class CappedTask(Task):  # type: ignore[type-arg]
    """Drops (and reports) a message delivered more often than MAX_REDELIVERIES allows."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.id and not request.is_eager:
            try:
                deliveries = count_delivery(f"{request.id}:{request.retries}")
            except RedisError as error:
                # Redis is down while the broker is not (RabbitMQ, or another Redis): the count
                # guards against poison messages; it is no reason to drop this one (an
                # exception here would fail and ack it). The task runs uncounted, and retries
                # through the outage like any other when it needs Redis itself.
                log.warning("task.delivery_uncounted", error=type(error).__name__)
                deliveries = 0
            cap = get_settings().max_redeliveries
            if deliveries > cap + 1:
                log.error("task.poison_message_dropped", deliveries=deliveries, cap=cap)
                self.on_poison(kwargs, deliveries)
                return None
        return super().__call__(*args, **kwargs)

    def on_poison(self, kwargs: dict[str, Any], deliveries: int) -> None:
        """What to keep of a dropped message (nothing by default: tasks that own their state)."""
