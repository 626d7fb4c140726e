"""A user's dialog keys (aiogram FSM: state, draft, recent places) and quotas in the bot's
storage: Redis,
or on embedded defaults `VAR_DIR/dialogs.sqlite3`. Keys are `fsm:<chat>[:<thread>]:<user>:
<destiny>[:<field>]` (DefaultKeyBuilder(with_destiny=True), as bot/app.py builds it)."""

from __future__ import annotations

import sqlite3

import redis

from core.limits import USER_QUOTA_PREFIX
from core.settings import get_settings

PREFIX = "fsm"
_BATCH = 1000


def _redis() -> redis.Redis:
    url = get_settings().redis_url
    assert url is not None
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)


def forget(telegram_id: int) -> int:
    """Delete every dialog key of the user, in any chat; how many there were."""
    if get_settings().redis_url:
        client = _redis()
        try:
            keys = [
                raw
                for raw in client.scan_iter(match=f"{PREFIX}:*:{telegram_id}:*", count=_BATCH)
                if telegram_id in _candidates(raw.decode())
            ]
            # The bot's quotas of them name them too (moving windows of up to an hour).
            keys += [
                raw
                for raw in client.scan_iter(
                    match=f"{USER_QUOTA_PREFIX}:LIMITER/*/{telegram_id}/*", count=_BATCH
                )
                if raw.decode().split("/")[2] == str(telegram_id)
            ]
            for start in range(0, len(keys), _BATCH):
                client.delete(*keys[start : start + _BATCH])
            return len(keys)
        finally:
            client.close()
    path = get_settings().var_dir / "dialogs.sqlite3"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        keys = [
            key
            for (key,) in conn.execute(
                "SELECT key FROM dialogs WHERE key LIKE ?", (f"{PREFIX}:%:{telegram_id}:%",)
            )
            if telegram_id in _candidates(key)
        ]
        conn.executemany("DELETE FROM dialogs WHERE key = ?", [(k,) for k in keys])
        return len(keys)
    finally:
        conn.close()


def _candidates(key: str) -> set[int]:
    """The user segment of a key read with and without a field part (in a private chat the
    chat is the user; group chats' ids are negative, so no other user is matched)."""
    parts = key.split(":")
    if len(parts) < 4 or parts[0] != PREFIX:
        return set()
    found: set[int] = set()
    for index in (-3, -2):  # <user>:<destiny>:<field>, or <user>:<destiny>
        try:
            found.add(int(parts[index]))
        except ValueError:
            continue
    return found
