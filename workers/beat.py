"""Beat that rides out a Redis outage instead of exiting, and a Redis that lost its data.

redbeat extends its lock at every tick and lets a Redis error escape, which ends beat (and with
it the outbox relay) until something restarts it. Here a Redis error makes the tick wait and try
again; a lock lost meanwhile (it outlived its timeout, and another beat may hold it now) is
taken again only when free, so two beats still never both fire.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis

from core.logging import get_logger

log = get_logger(__name__)

RETRY_S = 5.0


class ResilientRedBeatScheduler(RedBeatScheduler):  # type: ignore[misc]
    _outage = False
    lock: Any = None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if self.lock_key and not self._hold_lock():
                return RETRY_S  # standby: another beat holds the lock
            self._restore_schedule()
            interval = float(super().tick(*args, **kwargs))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            if not self._outage:
                log.warning("beat.redis_unavailable", error=f"{type(error).__name__}: {error}")
            self._outage = True
            return RETRY_S
        if self._outage:
            log.info("beat.redis_back")
            self._outage = False
        return interval

    def _restore_schedule(self) -> None:
        """redbeat writes the schedule into Redis only when it starts: a Redis restarted without
        its data (or flushed) would leave beat firing nothing. Entries kept their last run, so
        writing them again fires nothing twice."""
        client = get_redis(self.app)
        conf = self.app.redbeat_conf
        if client.zcard(conf.schedule_key) >= len(conf.schedule):
            return
        log.warning("beat.schedule_restored", entries=len(conf.schedule))
        self.setup_schedule()

    def _hold_lock(self) -> bool:
        """Extend the lock we hold, or take it when it is free; False when another beat has it."""
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
                return True
            except redis.exceptions.LockError:
                log.warning("beat.lock_lost")  # expired during an outage
                self.lock = None
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # as redbeat does
        if not lock.acquire(blocking=False):
            return False
        log.info("beat.lock_acquired")
        self.lock = lock
        return True

    def close(self) -> None:
        try:
            super().close()
        except redis.exceptions.RedisError as error:
            # The lock then lapses by itself after its timeout.
            log.warning("beat.lock_not_released", error=f"{type(error).__name__}: {error}")
