"""Users' limits in real Redis: shared by every bot process (two Quotas, one window)."""

from __future__ import annotations

import pytest

from bot.quotas import Quotas, TooFast
from core import commands as c
from core.settings import get_settings


async def test_two_bot_processes_share_a_users_window(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("USER_LIMIT_COMMENTS", "2 per hour")
    get_settings.cache_clear()
    first, second = Quotas.from_settings(get_settings()), Quotas.from_settings(get_settings())
    actor = c.Actor(user_id=4242, chat_id=4242)
    comment = c.AddComment(idempotency_key="k", actor=actor, request_id=1, text="hi")
    await first.take(4242, comment)
    await second.take(4242, comment)
    with pytest.raises(TooFast) as refused:
        await first.take(4242, comment)
    assert refused.value.kind == "comments" and 3500 < refused.value.wait_s <= 3600
    # Other commands still go (the commands limit is not spent by the refusal).
    await second.take(4242, c.ShowMyRequests(idempotency_key="m", actor=actor))


async def test_an_erasure_deletes_the_users_quota_keys(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quota keys name the user's Telegram id (windows of up to an hour): erased with them."""
    import redis

    from workers.privacy import dialogs

    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    quotas = Quotas.from_settings(get_settings())
    for user in (4343, 43):  # 43: a look-alike that must stay
        actor = c.Actor(user_id=user, chat_id=user)
        await quotas.take(
            user, c.AddComment(idempotency_key="k", actor=actor, request_id=1, text="x")
        )
    client = redis.Redis.from_url(redis_url)
    assert any(b"/4343/" in k for k in client.keys("*"))
    dialogs.forget(4343)
    left = client.keys("*")
    assert not any(b"4343" in k for k in left) and any(b"/43/" in k for k in left)
