"""The /new dialog's bot-side memory: the user's recent locations, and erasing it all.

Recent locations live in the FSM storage under their own `StorageKey` (destiny "recent"), so
they survive `state.clear()` at the end of a dialog. They may hold personal data (a flat
number), so `forget_user` erases them together with the dialog state.

A storage whose key builder cannot tell destinies apart (aiogram's `DefaultKeyBuilder()` without
`with_destiny=True`, e.g. `RedisStorage.from_url(url)`) raises ValueError for such a key: then
recent locations are simply not kept (logged), and the dialog works without them.
"""

from __future__ import annotations

from contextlib import suppress

from aiogram.fsm.storage.base import BaseStorage, StorageKey

from core import limits
from core.logging import get_logger

log = get_logger(__name__)

RECENT_DESTINY = "recent"
_FIELD = "locations"


def recent_key(bot_id: int, chat_id: int, user_id: int) -> StorageKey:
    return StorageKey(bot_id=bot_id, chat_id=chat_id, user_id=user_id, destiny=RECENT_DESTINY)


async def recent_locations(storage: BaseStorage, key: StorageKey) -> list[str]:
    """The user's recent locations, newest first (empty when the storage can't keep them)."""
    try:
        data = await storage.get_data(key)
    except ValueError:
        log.warning("recent_locations.unavailable", storage=type(storage).__name__)
        return []
    raw = data.get(_FIELD)
    if not isinstance(raw, list):
        return []
    return [item for item in raw if isinstance(item, str) and item][: limits.RECENT_LOCATIONS]


async def remember_location(storage: BaseStorage, key: StorageKey, location: str) -> None:
    """Put `location` first: deduplicated (case-insensitively), at most RECENT_LOCATIONS."""
    current = await recent_locations(storage, key)
    folded = location.casefold()
    kept = [item for item in current if item.casefold() != folded]
    try:
        await storage.set_data(key, {_FIELD: [location, *kept][: limits.RECENT_LOCATIONS]})
    except ValueError:
        log.warning("recent_locations.unavailable", storage=type(storage).__name__)


async def forget_user(storage: BaseStorage, bot_id: int, chat_id: int, user_id: int) -> None:
    """Erase what the bot keeps about the user in this chat: dialog state, draft, recents."""
    key = StorageKey(bot_id=bot_id, chat_id=chat_id, user_id=user_id)
    await storage.set_state(key, None)
    await storage.set_data(key, {})
    with suppress(ValueError):  # such a storage never kept recent locations
        await storage.set_data(recent_key(bot_id, chat_id, user_id), {})
