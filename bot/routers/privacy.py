"""/export and /forget_me: a user's own data, as a file or erased. The bot asks before erasing
(nothing is enqueued until Confirm); both commands always act on the sender alone."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.actors import Envelope
from bot.dialogs.memory import forget_user
from bot.dialogs.storage import leave_no_trace
from bot.middlewares import with_envelopes
from core import commands as c
from core.callbacks import PrivacyCb, PrivacyVerb
from core.texts import t


async def export(message: Message, envelope: Envelope) -> None:
    await envelope.send(c.ExportMyData)
    await message.answer(t("privacy.export.preparing", envelope.lang))


async def ask_to_forget(message: Message, envelope: Envelope) -> None:
    lang = envelope.lang
    buttons = [
        InlineKeyboardButton(
            text=t("privacy.forget.confirm", lang),
            callback_data=PrivacyCb(verb=PrivacyVerb.ERASE).pack(),
        ),
        InlineKeyboardButton(
            text=t("privacy.forget.cancel", lang),
            callback_data=PrivacyCb(verb=PrivacyVerb.KEEP).pack(),
        ),
    ]
    await message.answer(
        t("privacy.forget.ask", lang), reply_markup=InlineKeyboardMarkup(inline_keyboard=[buttons])
    )


async def on_answer(
    callback: CallbackQuery, callback_data: PrivacyCb, envelope: Envelope, state: FSMContext
) -> None:
    lang, message = envelope.lang, callback.message
    if envelope.chat is None or not isinstance(message, Message):
        await callback.answer(t("stale", lang))
        return
    if callback_data.verb is PrivacyVerb.ERASE:
        # Edited first: the worker's "erased" must be the last thing the user sees.
        await message.edit_text(t("privacy.forget.erasing", lang))
        leave_no_trace()
        # The worker erases the dialog keys too; this drops them at once for this bot.
        if callback.from_user is not None:
            await forget_user(
                state.storage,
                callback.bot.id if callback.bot else 0,
                message.chat.id,
                callback.from_user.id,
            )
        await envelope.send(c.EraseMe)
    else:
        await message.edit_text(t("privacy.forget.kept", lang))
    await callback.answer()


def create_router() -> Router:
    router = with_envelopes(Router(name=__name__))
    router.message.register(export, Command("export"))
    router.message.register(ask_to_forget, Command("forget_me"))
    router.callback_query.register(on_answer, PrivacyCb.filter())
    return router
