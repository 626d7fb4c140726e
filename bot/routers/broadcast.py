"""/broadcast (admins): choose the audience, write the message; the worker counts the
recipients and asks to confirm. Whether the user is an admin is the worker's call."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.actors import Envelope, language_of
from bot.middlewares import with_envelopes
from core import commands as c
from core import limits
from core.callbacks import BroadcastCb, BroadcastVerb
from core.roles import Audience
from core.texts import t
from core.user_input import normalize


class Compose(StatesGroup):
    text = State()


_ON_BROADCAST: dict[BroadcastVerb, type[c.ConfirmBroadcast | c.CancelBroadcast]] = {
    BroadcastVerb.CONFIRM: c.ConfirmBroadcast,
    BroadcastVerb.CANCEL: c.CancelBroadcast,
}


async def ask_audience(message: Message, envelope: Envelope) -> None:
    # The worker knows who is an admin: it asks for the audience, or refuses at once.
    if message.from_user:
        await envelope.send(c.BeginBroadcast)


async def on_button(
    callback: CallbackQuery, callback_data: BroadcastCb, envelope: Envelope, state: FSMContext
) -> None:
    language, message = envelope.lang, callback.message
    if message is None:
        await callback.answer(t("stale", language))
        return
    audience = callback_data.arg  # an Audience or None: anything else does not unpack
    if callback_data.action is BroadcastVerb.AUDIENCE and audience is not None:
        await state.set_state(Compose.text)
        await state.update_data(audience=audience.value)
        audience_text = t(f"bc.audience.{audience}", language)
        await message.answer(
            t("bc.ask_text", language, audience=audience_text, max=limits.BROADCAST_MAX)
        )
    elif (model := _ON_BROADCAST.get(callback_data.action)) and callback_data.id > 0:
        await envelope.send(model, broadcast_id=callback_data.id)
    else:
        await callback.answer(t("stale", language))
        return
    await callback.answer()


async def on_text(message: Message, envelope: Envelope, state: FSMContext) -> None:
    language, text = envelope.lang, normalize(message.text or "")
    if not text:
        await message.answer(t("ask.text_expected", language, max=limits.BROADCAST_MAX))
        return
    if len(text) > limits.BROADCAST_MAX:
        await message.answer(
            t("ask.too_long", language, length=len(text), max=limits.BROADCAST_MAX)
        )
        return
    if message.from_user is None:
        return
    audience = (await state.get_data()).get("audience", Audience.EVERYONE.value)
    await envelope.send(c.StartBroadcast, audience=audience, text=text)
    await state.clear()


async def cancel(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(t("action.cancelled", language_of(message)))


def create_router() -> Router:
    router = with_envelopes(Router(name=__name__))
    router.message.register(cancel, StateFilter(Compose.text), Command("cancel"))
    router.message.register(on_text, StateFilter(Compose.text), ~F.text.startswith("/"))
    router.message.register(ask_audience, Command("broadcast"))
    router.callback_query.register(on_button, BroadcastCb.filter())
    return router
