"""/areas (staff: subscribe to the areas whose requests they get), /area (admins: define one)
and the areas' buttons. Roles are the worker's call; the bot only checks the input's shape."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.actors import Envelope
from bot.middlewares import with_envelopes
from core import commands as c
from core import limits
from core.callbacks import AreaCb
from core.texts import t
from core.user_input import normalize


async def areas(message: Message, envelope: Envelope) -> None:
    await envelope.send(c.ShowAreas)


def parse_area(args: str) -> tuple[str, list[str]] | None:
    """`Name: place, place` -> (name, places); `Name:` -> (name, []) to delete; None if the
    shape is wrong."""
    name, colon, rest = args.partition(":")
    name = normalize(name)
    if not colon or not name:
        return None
    return name, [p for p in (normalize(part) for part in rest.split(",")) if p]


async def area(message: Message, envelope: Envelope, command: CommandObject) -> None:
    parsed = parse_area(command.args or "")
    if parsed is None:
        await message.answer(t("area.usage", envelope.lang))
        return
    name, places = parsed
    if (
        len(name) > limits.AREA_NAME_MAX
        or len(places) > limits.AREA_PLACES_MAX
        or any(len(p) > limits.LOCATION_MAX for p in places)
    ):
        await message.answer(
            t(
                "area.too_long",
                envelope.lang,
                name_max=limits.AREA_NAME_MAX,
                places_max=limits.AREA_PLACES_MAX,
                place_max=limits.LOCATION_MAX,
            )
        )
        return
    await envelope.send(c.DefineArea, name=name, places=places)


async def toggle(callback: CallbackQuery, callback_data: AreaCb, envelope: Envelope) -> None:
    message = callback.message
    if message is None:
        await callback.answer(t("stale", envelope.lang))
        return
    await envelope.send(c.ToggleArea, area_id=callback_data.id, edit_message_id=message.message_id)
    await callback.answer()


def create_router() -> Router:
    router = with_envelopes(Router(name=__name__))
    router.message.register(areas, Command("areas"))
    router.message.register(area, Command("area"))
    router.callback_query.register(toggle, AreaCb.filter())
    return router
