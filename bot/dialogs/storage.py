"""Dialog state that changes once per update, atomically, and locks a dead bot cannot hold.

- Writes an update makes to the dialog state (state, draft, recent places) are kept aside and
  written together when the update is finished, in one Redis transaction with the update's id.
  An update that fails half-way changes nothing, so it can be tried again from the start; an
  update replayed after a crash (the bot died after finishing it, before Telegram heard so)
  finds its id among the last ones applied and is skipped. Ids are kept as a short list, not
  as "the highest seen": Telegram may restart its numbering.
- The per-user lock (one update of a user at a time) lives a few seconds and is extended while
  its update runs, so a bot killed while holding one stalls the next bot for seconds, not for
  aiogram's default minute.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import redis.exceptions
from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, KeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import TelegramObject, Update
from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from core.logging import get_logger

log = get_logger(__name__)

_UNSET: Any = object()
APPLIED_KEPT = 64  # more than one getUpdates batch (100 updates) of one user is not plausible
APPLIED_TTL_S = 7 * 24 * 3600
LOCK_TTL_S = 5.0


@dataclass
class _Pending:
    state: Any = _UNSET
    data: Any = _UNSET


_work: ContextVar[dict[StorageKey, _Pending] | None] = ContextVar("dialog_work", default=None)
# Set by an update that erases its user: its id is not recorded under their key either.
_no_trace: ContextVar[bool] = ContextVar("dialog_no_trace", default=False)


def leave_no_trace() -> None:
    """This update erases its user (/forget_me confirmed): finishing it records nothing under
    their key (the applied-updates list would outlive the erasure, named by their id)."""
    _no_trace.set(True)


class DialogStorage(BaseStorage):
    """Wraps aiogram's storage: outside an update's unit of work it passes through."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner

    async def set_state(self, key: StorageKey, state: str | State | None = None) -> None:
        value = state.state if isinstance(state, State) else state
        work = _work.get()
        if work is None:
            await self.inner.set_state(key, value)
        else:
            work.setdefault(key, _Pending()).state = value

    async def get_state(self, key: StorageKey) -> str | None:
        work = _work.get()
        pending = work.get(key) if work is not None else None
        if pending is not None and pending.state is not _UNSET:
            return cast(str | None, pending.state)
        return await self.inner.get_state(key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        work = _work.get()
        if work is None:
            await self.inner.set_data(key, data)
        else:
            work.setdefault(key, _Pending()).data = dict(data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        work = _work.get()
        pending = work.get(key) if work is not None else None
        if pending is not None and pending.data is not _UNSET:
            return dict(pending.data)
        return await self.inner.get_data(key)

    async def close(self) -> None:
        await self.inner.close()

    def create_isolation(self) -> BaseEventIsolation:
        if isinstance(self.inner, RedisStorage):
            return ShortLivedLocks(self.inner.redis, self.inner.key_builder)
        from aiogram.fsm.storage.memory import SimpleEventIsolation

        return SimpleEventIsolation()

    # --- once per update --------------------------------------------------------------------

    def _applied_key(self, key: StorageKey) -> str | None:
        if not isinstance(self.inner, RedisStorage):
            return None  # in memory: a crash forgets the dialog too, so nothing is replayed
        return self.inner.key_builder.build(key, cast(Any, "applied"))

    async def was_applied(self, key: StorageKey, update_id: int) -> bool:
        applied = self._applied_key(key)
        if applied is None or not isinstance(self.inner, RedisStorage):
            return False
        ids = await self.inner.redis.lrange(applied, 0, -1)
        return str(update_id).encode() in ids

    @contextlib.asynccontextmanager
    async def unit_of_work(self, key: StorageKey, update_id: int) -> AsyncIterator[None]:
        work: dict[StorageKey, _Pending] = {}
        token, trace = _work.set(work), _no_trace.set(False)
        try:
            yield
            no_trace = _no_trace.get()
        finally:
            _work.reset(token)
            _no_trace.reset(trace)
        await self._commit(work, key, update_id, no_trace=no_trace)

    async def _commit(
        self, work: dict[StorageKey, _Pending], key: StorageKey, uid: int, *, no_trace: bool
    ) -> None:
        inner = self.inner
        if not isinstance(inner, RedisStorage):
            for k, pending in work.items():
                if pending.state is not _UNSET:
                    await inner.set_state(k, pending.state)
                if pending.data is not _UNSET:
                    await inner.set_data(k, pending.data)
            return
        build = inner.key_builder.build
        async with inner.redis.pipeline(transaction=True) as pipe:
            for k, pending in work.items():
                if pending.state is not _UNSET:
                    if pending.state is None:
                        pipe.delete(build(k, "state"))
                    else:
                        pipe.set(build(k, "state"), pending.state, ex=inner.state_ttl)
                if pending.data is not _UNSET:
                    if pending.data:
                        pipe.set(
                            build(k, "data"), inner.json_dumps(pending.data), ex=inner.data_ttl
                        )
                    else:
                        pipe.delete(build(k, "data"))
            applied = build(key, cast(Any, "applied"))
            if no_trace:
                pipe.delete(applied)
            else:
                pipe.lpush(applied, uid)
                pipe.ltrim(applied, 0, APPLIED_KEPT - 1)
                pipe.expire(applied, APPLIED_TTL_S)
            await pipe.execute()


class ApplyOnce(BaseMiddleware):
    """Runs each update in a unit of work of the dialog storage; skips one applied already.
    Registered after aiogram's FSM middleware, so it runs inside the user's lock."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        state, storage = data.get("state"), data.get("fsm_storage")
        if (
            not isinstance(event, Update)
            or not isinstance(state, FSMContext)
            or not isinstance(storage, DialogStorage)
        ):
            return await handler(event, data)
        if await storage.was_applied(state.key, event.update_id):
            log.info("update.applied_before")
            return UNHANDLED
        async with storage.unit_of_work(state.key, event.update_id):
            return await handler(event, data)


class ShortLivedLocks(BaseEventIsolation):
    """One update of a user at a time, with a lock that expires LOCK_TTL_S after its holder
    stops extending it (a killed bot)."""

    def __init__(self, redis: Redis, key_builder: KeyBuilder, ttl_s: float = LOCK_TTL_S) -> None:
        self.redis, self.key_builder, self.ttl_s = redis, key_builder, ttl_s

    @contextlib.asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncIterator[None]:
        lock = self.redis.lock(self.key_builder.build(key, "lock"), timeout=self.ttl_s, sleep=0.05)
        await lock.acquire()
        keeper = asyncio.create_task(self._keep(lock))
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            # Not released (Redis is down, or it expired): it lapses by itself in seconds.
            with contextlib.suppress(redis.exceptions.RedisError):
                await lock.release()

    async def _keep(self, lock: Lock) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await lock.reacquire()
            except redis.exceptions.RedisError as error:
                log.warning("dialog_lock.not_extended", error=f"{type(error).__name__}: {error}")

    async def close(self) -> None:
        pass
