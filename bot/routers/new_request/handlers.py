"""The dialog's steps: entry and /cancel, the answers typed or sent, the buttons pressed, and
the router that wires each to its state."""

from __future__ import annotations

import secrets
from contextlib import suppress
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import CallbackQuery, Message

from bot.actors import Envelope, language_of
from bot.dialogs.memory import recent_key, recent_locations, remember_location
from bot.files import accept_file
from bot.middlewares import with_envelopes
from bot.routers.new_request.album import reply_to_album_later
from bot.routers.new_request.states import (
    CALLBACK_PREFIX,
    TEXT_STEPS,
    WRONG_INPUT,
    Act,
    DraftCb,
    NewRequest,
    TextStep,
)
from bot.routers.new_request.view import ask, drop_buttons, priority_label, summary
from core.commands import AttachmentIn, CreateRequest
from core.domain import Priority
from core.logging import get_logger
from core.texts import all_translations, t
from core.user_input import normalize

log = get_logger(__package__)  # one logger for the whole dialog


def _not_command(message: Message) -> bool:
    return not (message.text or "").startswith("/")


def _recent_locations_key(state: FSMContext) -> StorageKey:
    return recent_key(state.key.bot_id, state.key.chat_id, state.key.user_id)


# --- Entry and /cancel ----------------------------------------------------------------------


async def start_dialog(message: Message, state: FSMContext, bot: Bot) -> None:
    """/new or the menu button: a fresh draft (an unfinished one is dropped)."""
    await state.set_state(NewRequest.title)
    data = {"draft": secrets.token_hex(4), "attachments": []}
    await state.set_data(data)
    await ask(bot, message.chat.id, NewRequest.title.state, data, language_of(message))


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(t("new.cancelled", language_of(message)))


async def nothing_to_cancel(message: Message) -> None:
    await message.answer(t("new.nothing_to_cancel", language_of(message)))


# --- Steps answered with a message ------------------------------------------------------------


async def on_text(message: Message, state: FSMContext, bot: Bot) -> None:
    """Title, description or location typed by the user."""
    lang = language_of(message)
    current = await state.get_state()
    step = TEXT_STEPS[current]
    text = normalize(message.text or "")  # nothing visible (zero-width spaces) is empty
    data = await state.get_data()
    if not text:
        error = t(f"new.error.{step.name}_empty", lang)
        await ask(bot, message.chat.id, current, data, lang, error)
        return
    if len(text) > step.limit:
        error = t(f"new.error.{step.name}_too_long", lang, length=len(text), max=step.limit)
        await ask(bot, message.chat.id, current, data, lang, error)
        return
    await _next_after_text(bot, message.chat.id, state, step, text, lang)


async def _next_after_text(
    bot: Bot, chat_id: int, state: FSMContext, step: TextStep, text: str, lang: str | None
) -> None:
    update: dict[str, Any] = {step.name: text}
    if step.next == NewRequest.location:
        update["offered"] = await recent_locations(state.storage, _recent_locations_key(state))
    data = await state.update_data(update)
    await state.set_state(step.next)
    await ask(bot, chat_id, step.next.state, data, lang)


async def on_file(message: Message, state: FSMContext, bot: Bot) -> None:
    """A photo or document in the attachments step: a single file is answered at once, an
    album's items once for the whole album (see `album`)."""
    lang = language_of(message)
    step = NewRequest.attachments.state
    data = await state.get_data()
    attachments: list[dict[str, Any]] = list(data.get("attachments", []))
    attachment, error = accept_file(message, len(attachments), lang)
    if attachment is not None:
        attachments.append(attachment)
        data = await state.update_data(attachments=attachments)
    if message.media_group_id:
        reply_to_album_later(bot, state, message.chat.id, message.media_group_id, lang, error)
    else:
        await ask(bot, message.chat.id, step, data, lang, error)


async def on_wrong_input(message: Message, state: FSMContext, bot: Bot) -> None:
    """Anything else a step can't take: explain, ask again."""
    lang = language_of(message)
    current = await state.get_state()
    data = await state.get_data()
    await ask(bot, message.chat.id, current, data, lang, t(WRONG_INPUT[current], lang))


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
    await callback.answer(t("new.stale", language_of(callback)))


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
    await drop_buttons(callback)
    await callback.answer()
    step = TEXT_STEPS[NewRequest.location.state]
    lang = language_of(callback)
    await _next_after_text(bot, state.key.chat_id, state, step, str(offered[index]), lang)


async def on_priority(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext, bot: Bot
) -> None:
    data = await _active_draft(callback, callback_data, state)
    if data is None or callback_data.p is None:
        if data is not None:
            await on_stale(callback)
        return
    lang = language_of(callback)
    data = await state.update_data(priority=callback_data.p.value)
    await state.set_state(NewRequest.attachments)
    await drop_buttons(callback)
    await callback.answer(
        t("new.priority_chosen", lang, priority=priority_label(callback_data.p, lang))
    )
    await ask(bot, state.key.chat_id, NewRequest.attachments.state, data, lang)


async def on_attachments_done(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext, bot: Bot
) -> None:
    """Skip or Continue: to the summary with the files collected so far."""
    data = await _active_draft(callback, callback_data, state)
    if data is None:
        return
    await state.set_state(NewRequest.confirm)
    await drop_buttons(callback)
    await callback.answer()
    lang = language_of(callback)
    await ask(bot, state.key.chat_id, NewRequest.confirm.state, data, lang)


async def on_submit(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext, envelope: Envelope
) -> None:
    data = await _active_draft(callback, callback_data, state)
    if data is None or callback.message is None:
        return
    lang = envelope.lang
    try:
        command = envelope.build(
            CreateRequest,
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
    await envelope.enqueue(command)
    await state.clear()
    await remember_location(state.storage, _recent_locations_key(state), command.location)
    if isinstance(callback.message, Message):
        with suppress(TelegramBadRequest):
            await callback.message.edit_text(
                f"{summary(data, lang)}\n\n{t('new.sending', lang)}", reply_markup=None
            )
    await callback.answer()


async def on_cancel_button(
    callback: CallbackQuery, callback_data: DraftCb, state: FSMContext
) -> None:
    data = await _active_draft(callback, callback_data, state)
    if data is None:
        return
    await state.clear()
    await drop_buttons(callback)
    await callback.answer()
    if isinstance(callback.message, Message):
        await callback.message.answer(t("new.cancelled", language_of(callback)))


def _is_ours(callback: CallbackQuery) -> bool:
    return (callback.data or "").startswith(f"{CALLBACK_PREFIX}:")


def create_router() -> Router:
    router = with_envelopes(Router(name=__package__))
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
