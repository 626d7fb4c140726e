"""The Bot API client of a worker: one event loop and one aiogram Bot per process and thread.

Celery tasks are sync. A Bot reused across `asyncio.run` calls breaks on the second call, and a
fresh Bot per call costs ~0.28 s; one long-lived loop driven with run_until_complete costs ~1 ms.
Keyed by pid (a forked child must not reuse the parent's loop) and thread (thread pools).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.methods.base import TelegramMethod

from core.bot_session import bot_session
from core.logging import get_logger
from core.settings import get_settings

log = get_logger(__name__)

T = TypeVar("T")

_local = threading.local()
_all: list[TelegramClient] = []
_lock = threading.Lock()


class TelegramClient:
    def __init__(self, api_url: str, token: str) -> None:
        self.pid, self.api_url, self.token = os.getpid(), api_url, token
        self.loop = asyncio.new_event_loop()
        session = bot_session(api_url, timeout=30)
        self.bot = Bot(token, session=session)

    def call(self, method: TelegramMethod[T]) -> T:
        return self.loop.run_until_complete(self.bot(method))

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.bot.session.close())
            self.loop.close()


def get_client() -> TelegramClient:
    settings = get_settings()
    client: TelegramClient | None = getattr(_local, "client", None)
    if client is None or (client.pid, client.api_url, client.token) != (
        os.getpid(),
        settings.api_url,
        settings.token,
    ):
        if client is not None and client.pid == os.getpid():
            # Settings changed under this thread (tests do): close the old session, not leak it.
            with _lock:
                if client in _all:
                    _all.remove(client)
            with contextlib.suppress(RuntimeError):
                client.close()
        client = TelegramClient(settings.api_url, settings.token)
        _local.client = client
        with _lock:
            _all.append(client)
    return client


def warm_up() -> None:
    """Open this process's Bot API connection now (getMe is not rate limited). A cold first
    call takes tens of milliseconds longer than the rate limiter's safety margin, so the first
    sends of a fresh worker would otherwise reach Telegram bunched up and draw a 429."""
    from aiogram.methods import GetMe

    try:
        get_client().call(GetMe())
    except Exception as error:
        log.warning("telegram.warm_up_failed", error=f"{type(error).__name__}: {error}")


def close_clients() -> None:
    """worker_process_shutdown: close this process's sessions, never a forked parent's."""
    with _lock:
        clients = [c for c in _all if c.pid == os.getpid()]
        _all.clear()
    for client in clients:
        with contextlib.suppress(RuntimeError):  # a loop still running in a thread that is gone
            client.close()


def method_for(name: str, payload: dict[str, Any]) -> TelegramMethod[Any]:
    """Build aiogram's typed method from an outbox row ('sendMessage' -> SendMessage)."""
    import aiogram.methods

    cls = getattr(aiogram.methods, name[0].upper() + name[1:], None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, TelegramMethod):
        raise ValueError(f"unknown Bot API method {name!r}")
    method: TelegramMethod[Any] = cls.model_validate(payload)
    return method
