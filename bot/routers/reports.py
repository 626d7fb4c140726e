"""/report [today|week|month] (admins) and the summary's period buttons. Whether the user is
an admin is the worker's call; the bot only checks the period's word."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.actors import Envelope
from bot.middlewares import with_envelopes
from core import commands as c
from core.callbacks import ReportCb
from core.domain import ON_DEMAND_REPORTS, ReportKind
from core.texts import t
from core.user_input import normalize

_BY_WORD = {k.value: k for k in ON_DEMAND_REPORTS}


async def report(message: Message, envelope: Envelope, command: CommandObject) -> None:
    word = normalize(command.args or "").lower() or ReportKind.TODAY.value
    period = _BY_WORD.get(word)
    if period is None:
        await message.answer(t("report.usage", envelope.lang))
        return
    await envelope.send(c.ShowReport, period=period)


async def other_period(
    callback: CallbackQuery, callback_data: ReportCb, envelope: Envelope
) -> None:
    if envelope.chat is None:
        await callback.answer(t("stale", envelope.lang))
        return
    await envelope.send(c.ShowReport, period=callback_data.kind)
    await callback.answer()


def create_router() -> Router:
    router = with_envelopes(Router(name=__name__))
    router.message.register(report, Command("report"))
    router.callback_query.register(other_period, ReportCb.filter())
    return router
