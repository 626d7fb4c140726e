"""What the dialog shows: each step's question with its buttons, the summary, and asking."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.files import MB
from bot.routers.new_request.states import TEXT_STEPS, Act, DraftCb, NewRequest
from core import limits
from core.domain import Priority
from core.texts import t


def button(text: str, data: DraftCb) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def priority_label(priority: str, lang: str | None) -> str:
    return t(f"new.priority.{Priority(priority).value}", lang)


def summary(data: Mapping[str, Any], lang: str | None) -> str:
    return t(
        "new.summary",
        lang,
        title=data["title"],
        description=data["description"],
        location=data["location"],
        priority=priority_label(data["priority"], lang),
        count=len(data.get("attachments", [])),
    )


def question(
    step: str | None, data: Mapping[str, Any], lang: str | None
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The question of `step` and its buttons."""
    draft = str(data.get("draft", ""))
    if step in TEXT_STEPS:
        text_step = TEXT_STEPS[step]
        offered: list[str] = list(data.get("offered", []))
        if step == NewRequest.location.state and offered:
            rows = [
                [button(place, DraftCb(a=Act.LOCATION, d=draft, i=index))]
                for index, place in enumerate(offered)
            ]
            text = t("new.ask_location_recent", lang, max=text_step.limit)
            return text, InlineKeyboardMarkup(inline_keyboard=rows)
        return t(text_step.ask, lang, max=text_step.limit), None
    if step == NewRequest.priority.state:
        buttons = [
            button(priority_label(p, lang), DraftCb(a=Act.PRIORITY, d=draft, p=p)) for p in Priority
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
                max_mb=limits.MAX_FILE_BYTES // MB,
            )
            choice = button(t("new.button.skip", lang), DraftCb(a=Act.SKIP, d=draft))
        else:
            text = t("new.attached", lang, count=count, max=limits.MAX_ATTACHMENTS)
            choice = button(t("new.button.continue", lang), DraftCb(a=Act.CONTINUE, d=draft))
        return text, InlineKeyboardMarkup(inline_keyboard=[[choice]])
    # The summary.
    return summary(data, lang), InlineKeyboardMarkup(
        inline_keyboard=[
            [
                button(t("new.button.submit", lang), DraftCb(a=Act.SUBMIT, d=draft)),
                button(t("new.button.cancel", lang), DraftCb(a=Act.CANCEL, d=draft)),
            ]
        ]
    )


async def ask(
    bot: Bot,
    chat_id: int,
    step: str | None,
    data: Mapping[str, Any],
    lang: str | None,
    error: str | None = None,
) -> None:
    """Ask the question of `step`, after the explanation of what was wrong, if any."""
    text, markup = question(step, data, lang)
    if error:
        text = f"{error}\n\n{text}"
    await bot.send_message(chat_id, text, reply_markup=markup)


async def drop_buttons(callback: CallbackQuery) -> None:
    """Take the buttons off the message a press came from (already gone: nothing to do)."""
    if isinstance(callback.message, Message) and callback.message.reply_markup:
        with suppress(TelegramBadRequest):
            await callback.message.edit_reply_markup(reply_markup=None)
