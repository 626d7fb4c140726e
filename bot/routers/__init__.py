"""Feature routers, in the order they get a chance at an update (groups first: nothing
personal is answered in a group chat; fallback last)."""

from __future__ import annotations

from aiogram import Router

from bot.routers import (
    areas,
    broadcast,
    fallback,
    groups,
    new_request,
    privacy,
    reports,
    requests,
    start,
)


def feature_routers() -> list[Router]:
    return [
        groups.create_router(),
        start.create_router(),
        requests.create_router(),
        areas.create_router(),
        broadcast.create_router(),
        reports.create_router(),
        privacy.create_router(),
        new_request.create_router(),
        fallback.create_router(),
    ]
