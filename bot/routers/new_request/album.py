"""Album batching: an album arrives as one message per item, and gets one reply.

Each item is handled as it arrives, but a reply to each would trip Telegram's flood control
(about one message a second per chat), so an album gets a single reply with every refusal in
it, sent `ALBUM_REPLY_DELAY_S` (see the package) after its last item.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.fsm.context import FSMContext

from bot.routers import new_request as dialog
from bot.routers.new_request.states import NewRequest
from bot.routers.new_request.view import ask
from core.logging import get_logger

log = get_logger(__package__)  # one logger for the whole dialog


@dataclass
class _AlbumReply:
    errors: list[str] = field(default_factory=list)
    generation: int = 0


# Replies to albums being received, by (bot, chat, media_group_id): this process only.
_albums: dict[tuple[int, int, str], _AlbumReply] = {}
_album_tasks: set[asyncio.Task[None]] = set()


def reply_to_album_later(
    bot: Bot, state: FSMContext, chat_id: int, group: str, lang: str | None, error: str | None
) -> None:
    """One reply per album, sent once its items stopped coming, with every refusal in it."""
    key = (bot.id, chat_id, group)
    pending = _albums.setdefault(key, _AlbumReply())
    pending.generation += 1
    if error and error not in pending.errors:
        pending.errors.append(error)
    task = asyncio.create_task(_album_reply(bot, state, key, pending.generation, lang))
    _album_tasks.add(task)
    task.add_done_callback(_album_tasks.discard)


async def _album_reply(
    bot: Bot, state: FSMContext, key: tuple[int, int, str], generation: int, lang: str | None
) -> None:
    # Read from the package at call time: that is where the delay is set (and tuned by tests).
    await asyncio.sleep(dialog.ALBUM_REPLY_DELAY_S)
    pending = _albums.get(key)
    if pending is None or pending.generation != generation:
        return  # a later item of the album replies
    del _albums[key]
    try:
        if await state.get_state() != NewRequest.attachments.state:
            return  # the user moved on (Continue, /cancel) meanwhile
        data = await state.get_data()
        error = "\n".join(pending.errors) or None
        await ask(bot, key[1], NewRequest.attachments.state, data, lang, error)
    except Exception:
        log.exception("new_request.album_reply_failed")


async def drain_album_replies() -> None:
    """Wait for the album replies scheduled so far (tests, graceful shutdown)."""
    while _album_tasks:
        await asyncio.gather(*_album_tasks, return_exceptions=True)
