"""Areas: admins group places (`/area`), staff subscribe to them (`/areas`), and a new request
notifies the staff of the areas its place is in (db.areas.staff_for_place)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core import limits
from core.callbacks import AreaCb
from core.commands import DefineArea, ShowAreas, ToggleArea
from core.roles import Role
from core.texts import Markup, t
from db import areas as q
from db.models import Area, AreaStaff
from db.requests import valid_id
from workers.desk import render
from workers.kit import Ctx, Keyboard, button, inline, require_admin, require_staff
from workers.outbox import Replies


def show_areas(session: Session, command: ShowAreas, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_staff(ctx):
        return
    _show(ctx, command.edit_message_id)


def toggle_area(session: Session, command: ToggleArea, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_staff(ctx):  # a resident's forged button changes nothing
        return
    area = session.get(Area, command.area_id) if valid_id(command.area_id) else None
    if area is None:
        ctx.reply("area.gone")
        return
    subscription = session.get(AreaStaff, (area.id, ctx.actor.id))
    if subscription is None:
        session.add(AreaStaff(area_id=area.id, user_id=ctx.actor.id))
    else:
        session.delete(subscription)
    session.flush()
    _show(ctx, command.edit_message_id)


def define_area(session: Session, command: DefineArea, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_admin(ctx):
        return
    area = q.area_named(session, command.name)
    # Duplicates (in any case) add nothing: keep the first spelling.
    places = list({p.casefold(): p for p in reversed(command.places)}.values())[::-1]
    if not places:
        if area is None:
            ctx.reply("area.unknown", name=command.name)
            return
        session.delete(area)
        ctx.reply("area.deleted", name=area.name)
        return
    if area is None:
        if len(q.all_areas(session)) >= limits.AREAS_MAX:
            ctx.reply("area.too_many", max=limits.AREAS_MAX)
            return
        area = Area(name=command.name, places=places)
        session.add(area)
    else:
        area.name, area.places = command.name, places
    session.flush()
    ctx.reply("area.saved", name=area.name, places=", ".join(places))


def _show(ctx: Ctx, edit_message_id: int | None) -> None:
    areas = q.all_areas(ctx.session)
    lines: list[str] = [t("areas.title", ctx.lang)]
    keyboard: Keyboard | None = None
    if not areas:
        lines.append(t("areas.empty", ctx.lang))
    else:
        mine = q.subscriptions(ctx.session, ctx.actor.id)
        counts = q.subscribers(ctx.session)
        rows = []
        for area in areas:
            count = counts.get(area.id, 0)
            staff = (
                t("areas.staff", ctx.lang, count=count) if count else t("areas.nobody", ctx.lang)
            )
            key = "areas.subscribed" if area.id in mine else "areas.not_subscribed"
            lines.append(
                t(
                    "areas.line",
                    ctx.lang,
                    mark="✅" if area.id in mine else "▫",
                    # Cut so that the most areas there may be fit one message.
                    name=render.cut(area.name, 40),
                    places=render.cut(", ".join(area.places), 60),
                    staff=staff,
                )
            )
            label = t(key, ctx.lang, name=render.cut(area.name, 40))
            rows.append([button(label, AreaCb(id=area.id).pack())])
        lines += ["", t("areas.explain", ctx.lang)]
        keyboard = inline(rows)
    if ctx.role is Role.ADMIN:
        lines.append(t("areas.admin_usage", ctx.lang))
    ctx.show_list(Markup("\n".join(lines)), keyboard, edit_message_id)
