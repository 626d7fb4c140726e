"""/new: the dialog that collects a request and enqueues CreateRequest on Submit.

Steps (states of `NewRequest`): title → description → location (recent ones offered as inline
buttons) → priority (inline buttons) → attachments (photos and documents; an album arrives as
one message per item) → a summary with Submit / Cancel. The draft lives in the Dispatcher's FSM
storage as JSON-serializable data (attachments as plain dicts), so it survives a bot restart on
Redis. Only Submit produces a command; the worker answers "Request #N created".

How input is treated:
- Every invalid input (empty or too long text, a sticker/photo/voice where text is expected,
  text where a button or a file is expected, an 11th file, a file over the size limit) gets a
  short explanation followed by the same question again. Nothing is sent. Text is normalised
  first (`core.user_input`): control characters are dropped, and only invisible characters
  (zero-width spaces, direction marks) count as empty.
- Commands mid-dialog: no step handler takes a message starting with "/". /start, /help and the
  help menu button are answered by the start router (it runs first) and the draft stays at its
  step, so the next answer continues it. /cancel drops the draft (outside a dialog it says there
  is nothing to cancel; in another feature's dialog it is left to that feature). /new or the
  "New request" menu button starts a fresh draft. Any other command falls through to the later
  routers (the fallback says it did not understand) and the draft is kept.
- Every inline button carries the draft's random token: a press from an older draft, a second
  press (e.g. Submit twice), a press in another step or forged data is answered with "this draft
  is no longer active" and changes nothing.
- Albums: each item is handled as it arrives, but the album gets one reply (with every refusal
  in it) shortly after its last item, so an album of ten does not trip flood control.
- Skip and Continue both go to the summary, keeping the files collected so far: Skip is shown
  while there are none, Continue once there is at least one.
- Recent locations: see `bot.dialogs.memory` (also `forget_user` for erasure).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    User,
)
from pydantic import ValidationError

from bot.actors import actor_of, key_of
from bot.dialogs.memory import recent_key, recent_locations, remember_location
from bot.enqueue import CommandQueue
from core import limits
from core.commands import AttachmentIn, CreateRequest
from core.domain import Priority
from core.logging import get_logger
from core.texts import all_translations, t
from core.user_input import normalize

log = get_logger(__name__)

CALLBACK_PREFIX = "np"
ALBUM_REPLY_DELAY_S = 1.0  # Telegram delivers an album's items within a fraction of a second
_MB = 1024 * 1024


class NewRequest(StatesGroup):
    title = State()
    description = State()
    location = State()
    priority = State()
    attachments = State()
    confirm = State()


class Act(StrEnum):
    PRIORITY = "p"
    LOCATION = "l"
    SKIP = "s"
    CONTINUE = "c"
    SUBMIT = "ok"
    CANCEL = "x"


class DraftCb(CallbackData, prefix=CALLBACK_PREFIX):
    """An inline button of the dialog, e.g. "np:p:1f2e3d4c:high:" (well under 64 bytes)."""

    a: Act
    d: str  # the draft's token: buttons of another draft are stale
    p: Priority | None = None
    i: int | None = None  # index into the recent locations offered


@dataclass(frozen=True)
class _TextStep:
    name: str
    limit: int
    ask: str
    next: State


_TEXT_STEPS: dict[str | None, _TextStep] = {
    NewRequest.title.state: _TextStep(
        "title", limits.TITLE_MAX, "new.ask_title", NewRequest.description
    ),
    NewRequest.description.state: _TextStep(
        "description", limits.DESCRIPTION_MAX, "new.ask_description", NewRequest.location
    ),
    NewRequest.location.state: _TextStep(
        "location", limits.LOCATION_MAX, "new.ask_location", NewRequest.priority
    ),
}

_WRONG_INPUT: dict[str | None, str] = {
    NewRequest.title.state: "new.error.text_expected",
    NewRequest.description.state: "new.error.text_expected",
    NewRequest.location.state: "new.error.text_expected",
    NewRequest.priority.state: "new.error.priority_expected",
    NewRequest.attachments.state: "new.error.files_expected",
    NewRequest.confirm.state: "new.error.summary_expected",
}


def _lang(user: User | None) -> str | None:
    return user.language_code if user else None


def _not_command(message: Message) -> bool:
    return not (message.text or "").startswith("/")


def _button(text: str, data: DraftCb) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _priority_label(priority: str, lang: str | None) -> str:
    return t(f"new.priority.{Priority(priority).value}", lang)


def _summary(data: Mapping[str, Any], lang: str | None) -> str:
    return t(
        "new.summary",
        lang,
        title=data["title"],
        description=data["description"],
        location=data["location"],
        priority=_priority_label(data["priority"], lang),
        count=len(data.get("attachments", [])),
    )


def _question(
    step: str | None, data: Mapping[str, Any], lang: str | None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The question of `step` and its buttons."""
    draft = str(data.get("draft", ""))
    if step in _TEXT_STEPS:
        text_step = _TEXT_STEPS[step]
        offered: list[str] = list(data.get("offered", []))
        if step == NewRequest.location.state and offered:
            rows = [
                [_button(place, DraftCb(a=Act.LOCATION, d=draft, i=index))]
                for index, place in enumerate(offered)
            ]
            text = t("new.ask_location_recent", lang, max=text_step.limit)
            return text, InlineKeyboardMarkup(inline_keyboard=rows)
        return t(text_step.ask, lang, max=text_step.limit), None
    if step == NewRequest.priority.state:
        buttons = [
            _button(_priority_label(p, lang), DraftCb(a=Act.PRIORITY, d=draft, p=p))
            for p in Priority
        ]
        return t("new.ask_priority", lang), InlineKeyboardMarkup(
            inline_keyboard=[buttons[:2], buttons[2:]]
        )
    if step == NewRequest.attachments.state:
        count = len(data.get("attachments", []))
        if count == 0:
            text = t(
                "new.ask_attachments",
                lang,
                max=limits.MAX_ATTACHMENTS,
                max_mb=limits.MAX_FILE_BYTES // _MB,
            )
            button = _button(t("new.button.skip", lang), DraftCb(a=Act.SKIP, d=draft))
        else:
            text = t("new.attached", lang, count=count, max=limits.MAX_ATTACHMENTS)
            button = _button(t("new.button.continue", lang), DraftCb(a=Act.CONTINUE, d=draft))
        return text, InlineKeyboardMarkup(inline_keyboard=[[button]])
    # The summary.
    return _summary(data, lang), InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(t("new.button.submit", lang), DraftCb(a=Act.SUBMIT, d=draft)),
                _button(t("new.button.cancel", lang), DraftCb(a=Act.CANCEL, d=draft)),
            ]
        ]
    )


async def _ask(
    bot: Bot,
    chat_id: int,
    step: str | None,
    data: Mapping[str, Any],
    lang: str | None,
    error: str | None = None,
) -> None:
    """Ask the question of `step`, after the explanation of what was wrong, if any."""
    text, markup = _question(step, data, lang)
    if error:
        text = f"{error}\n\n{text}"
    await bot.send_message(chat_id, text, reply_markup=markup)


async def _drop_buttons(callback: CallbackQuery) -> None:
    if isinstance(callback.message, Message) and callback.message.reply_markup:
        with suppress(TelegramBadRequest):
            await callback.message.edit_reply_markup(reply_markup=None)


def _recent_key_of(state: FSMContext) -> StorageKey:
    return recent_key(state.key.bot_id, state.key.chat_id, state.key.user_id)


# --- Entry and /cancel ----------------------------------------------------------------------


async def start_dialog(message: Message, state: FSMContext, bot: Bot) -> None:
    """/new or the menu button: a fresh draft (an unfinished one is dropped)."""
    await state.set_state(NewRequest.title)
    data = {"draft": secrets.token_hex(4), "attachments": []}
    await state.set_data(data)
    await _ask(bot, message.chat.id, NewRequest.title.state, data, _lang(message.from_user))


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(t("new.cancelled", _lang(message.from_user)))


async def nothing_to_cancel(message: Message) -> None:
    await message.answer(t("new.nothing_to_cancel", _lang(message.from_user)))


# --- Steps answered with a message ------------------------------------------------------------


async def on_text(message: Message, state: FSMContext, bot: Bot) -> None:
    """Title, description or location typed by the user."""
    lang = _lang(message.from_user)
    current = await state.get_state()
    step = _TEXT_STEPS[current]
    text = normalize(message.text or "")  # nothing visible (zero-width spaces) is empty
    data = await state.get_data()
    if not text:
        error = t(f"new.error.{step.name}_empty", lang)
        await _ask(bot, message.chat.id, current, data, lang, error)
        return
    if len(text) > step.limit:
        error = t(f"new.error.{step.name}_too_long", lang, length=len(text), max=step.limit)
        await _ask(bot, message.chat.id, current, data, lang, error)
        return
    await _next_after_text(bot, message.chat.id, state, step, text, lang)


async def _next_after_text(
    bot: Bot, chat_id: int, state: FSMContext, step: _TextStep, text: str, lang: str | None
) -> None:
    update: dict[str, Any] = {step.name: text}
    if step.next == NewRequest.location:
        update["offered"] = await recent_locations(state.storage, _recent_key_of(state))
    data = await state.update_data(update)
    await state.set_state(step.next)
    await _ask(bot, chat_id, step.next.state, data, lang)


def _attachment_of(message: Message) -> dict[str, Any]:
    """The file of a photo or document message as AttachmentIn's JSON fields."""
    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return {
            "kind": "photo",
            "file_id": best.file_id,
            "file_unique_id": best.file_unique_id,
            "file_name": None,
            "mime_type": None,
            "size": best.file_size,
        }
    document = message.document
    assert document is not None
    mime = document.mime_type
    return {
        "kind": "document",
        "file_id": document.file_id,
        "file_unique_id": document.file_unique_id,
        "file_name": document.file_name[:255] if document.file_name else None,
        "mime_type": mime if mime and len(mime) <= 128 else None,
        "size": document.file_size,
    }


@dataclass
class _AlbumReply:
    errors: list[str] = field(default_factory=list)
    generation: int = 0


# Replies to albums being received, by (bot, chat, media_group_id): this process only.
_albums: dict[tuple[int, int, str], _AlbumReply] = {}
_album_tasks: set[asyncio.Task[None]] = set()


def _reply_to_album_later(
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
    await asyncio.sleep(ALBUM_REPLY_DELAY_S)
    pending = _albums.get(key)
    if pending is None or pending.generation != generation:
        return  # a later item of the album replies
    del _albums[key]
    try:
        if await state.get_state() != NewRequest.attachments.state:
            return  # the user moved on (Continue, /cancel) meanwhile
        data = await state.get_data()
        error = "\n".join(pending.errors) or None
        await _ask(bot, key[1], NewRequest.attachments.state, data, lang, error)
    except Exception:
        log.exception("new_request.album_reply_failed")


async def drain_album_replies() -> None:
    """Wait for the album replies scheduled so far (tests, graceful shutdown)."""
    while _album_tasks:
        await asyncio.gather(*_album_tasks, return_exceptions=True)


async def on_file(message: Message, state: FSMContext, bot: Bot) -> None:
    """A photo or document in the attachments step.

    Each album item arrives as its own message: a reply to each would trip Telegram's flood
    control (about one message a second per chat), so an album gets a single reply, sent
    ALBUM_REPLY_DELAY_S after its last item. A single file is answered at once.
    """
    lang = _lang(message.from_user)
    step = NewRequest.attachments.state
    data = await state.get_data()
    attachments: list[dict[str, Any]] = list(data.get("attachments", []))
    item = _attachment_of(message)
    size = item["size"]
    error: str | None = None
    if len(attachments) >= limits.MAX_ATTACHMENTS:
        error = t("new.error.too_many_files", lang, max=limits.MAX_ATTACHMENTS)
    elif size is not None and size > limits.MAX_FILE_BYTES:
        error = t(
            "new.error.file_too_big",
            lang,
            size_mb=f"{size / _MB:.1f}",
            max_mb=limits.MAX_FILE_BYTES // _MB,
        )
    else:
        try:
            attachment = AttachmentIn.model_validate(item)
        except ValidationError:
            error = t("new.error.files_expected", lang)
        else:
            attachments.append(attachment.model_dump(mode="json"))
            data = await state.update_data(attachments=attachments)
    if message.media_group_id:
        _reply_to_album_later(bot, state, message.chat.id, message.media_group_id, lang, error)
    else:
        await _ask(bot, message.chat.id, step, data, lang, error)


async def on_wrong_input(message: Message, state: FSMContext, bot: Bot) -> None:
    """Anything else a step can't take: explain, ask again."""
    lang = _lang(message.from_user)
    current = await state.get_state()
    data = await state.get_data()
    await _ask(bot, message.chat.id, current, data, lang, t(_WRONG_INPUT[current], lang))


# --- Steps answered with a button ---------------------------------------------------------------


async def _active_draft(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext
) -> dict[str, Any] | None:
    """The draft the button belongs to, or None (the press was answered as stale)."""
    data = await state.get_data()
    if data.get("draft") != callback_data.d or callback.message is None:
        await on_stale(callback)
        return None
    return data


async def on_stale(callback: CallbackQuery) -> None:
    await callback.answer(t("new.stale", _lang(callback.from_user)))


async def on_recent_location(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext, bot: Bot
) -> None:
    data = await _active_draft(callback, callback_data, state)
    if data is None:
        return
    offered = list(data.get("offered", []))
    index = callback_data.i
    if index is None or not 0 <= index < len(offered):
        await on_stale(callback)
        return
    await _drop_buttons(callback)
    await callback.answer()
    step = _TEXT_STEPS[NewRequest.location.state]
    lang = _lang(callback.from_user)
    await _next_after_text(bot, state.key.chat_id, state, step, str(offered[index]), lang)


async def on_priority(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext, bot: Bot
) -> None:
    data = await _active_draft(callback, callback_data, state)
    if data is None or callback_data.p is None:
        if data is not None:
            await on_stale(callback)
        return
    lang = _lang(callback.from_user)
    data = await state.update_data(priority=callback_data.p.value)
    await state.set_state(NewRequest.attachments)
    await _drop_buttons(callback)
    await callback.answer(
        t("new.priority_chosen", lang, priority=_priority_label(callback_data.p, lang))
    )
    await _ask(bot, state.key.chat_id, NewRequest.attachments.state, data, lang)


async def on_attachments_done(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext, bot: Bot
) -> None:
    """Skip or Continue: to the summary with the files collected so far."""
    data = await _active_draft(callback, callback_data, state)
    if data is None:
        return
    await state.set_state(NewRequest.confirm)
    await _drop_buttons(callback)
    await callback.answer()
    lang = _lang(callback.from_user)
    await _ask(bot, state.key.chat_id, NewRequest.confirm.state, data, lang)


async def on_submit(
    callback: CallbackQuery,
    callback_data: DraftCb,
    state: FSMContext,
    event_update: Update,
    commands: CommandQueue,
) -> None:
    data = await _active_draft(callback, callback_data, state)
    if data is None or callback.message is None:
        return
    lang = _lang(callback.from_user)
    try:
        command = CreateRequest(
            idempotency_key=key_of(event_update),
            actor=actor_of(callback.from_user, callback.message.chat),
            title=data["title"],
            description=data["description"],
            location=data["location"],
            priority=Priority(data["priority"]),
            attachments=[AttachmentIn.model_validate(a) for a in data.get("attachments", [])],
        )
    except (KeyError, TypeError, ValueError):  # a damaged draft (ValidationError is a ValueError)
        log.warning("new_request.bad_draft", exc_info=True)
        await state.clear()
        await on_stale(callback)
        return
    # Enqueued first: if the broker is down the update is redelivered with the draft intact.
    await commands.send(command)
    await state.clear()
    await remember_location(state.storage, _recent_key_of(state), command.location)
    if isinstance(callback.message, Message):
        with suppress(TelegramBadRequest):
            await callback.message.edit_text(
                f"{_summary(data, lang)}\n\n{t('new.sending', lang)}", reply_markup=None
            )
    await callback.answer()


async def on_cancel_button(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext
) -> None:
    data = await _active_draft(callback, callback_data, state)
    if data is None:
        return
    await state.clear()
    await _drop_buttons(callback)
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.answer(t("new.cancelled", _lang(callback.from_user)))


def _is_ours(callback: CallbackQuery) -> bool:
    return (callback.data or "").startswith(f"{CALLBACK_PREFIX}:")


def create_router() -> Router:
    router = Router(name=__name__)
    dialog = StateFilter(NewRequest)

    router.message.register(start_dialog, Command("new"))
    router.message.register(start_dialog, F.text.in_(all_translations("menu.new")))
    router.message.register(cancel, Command("cancel"), dialog)
    router.message.register(nothing_to_cancel, Command("cancel"), StateFilter(None))

    text_steps = StateFilter(NewRequest.title, NewRequest.description, NewRequest.location)
    router.message.register(on_text, text_steps, F.text, _not_command)
    router.message.register(on_file, StateFilter(NewRequest.attachments), F.photo | F.document)
    router.message.register(on_wrong_input, dialog, _not_command)

    cb = router.callback_query
    cb.register(
        on_recent_location, StateFilter(NewRequest.location), DraftCb.filter(F.a == Act.LOCATION)
    )
    cb.register(on_priority, StateFilter(NewRequest.priority), DraftCb.filter(F.a == Act.PRIORITY))
    cb.register(
        on_attachments_done,
        StateFilter(NewRequest.attachments),
        DraftCb.filter(F.a.in_({Act.SKIP, Act.CONTINUE})),
    )
    cb.register(on_submit, StateFilter(NewRequest.confirm), DraftCb.filter(F.a == Act.SUBMIT))
    cb.register(
        on_cancel_button, StateFilter(NewRequest.confirm), DraftCb.filter(F.a == Act.CANCEL)
    )
    # Anything else with our prefix: an old message, a double press, forged or damaged data.
    cb.register(on_stale, _is_ours)
    return router
