"""/new: the dialog that collects a request and enqueues CreateRequest on Submit."""

from __future__ import annotations

from aiogram import Router


def create_router() -> Router:
    return Router(name=__name__)
