"""Callback data of inline buttons: one definition for the worker (which draws most buttons)
and the bot (which parses the presses). Packed data stays under Telegram's 64 bytes; the
worker re-checks everything a button claims (it can be forged)."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

from core.user_input import DB_ID_LIMIT, PAGE_LIMIT


class RequestCb(CallbackData, prefix="rq"):
    """An action on request `id`: a domain Action, or open/comment/priority/setprio/rate/assignto.
    `arg` carries the chosen value (priority, rating, assignee's Telegram id)."""

    action: str
    id: int = Field(gt=0, lt=DB_ID_LIMIT)  # out of range: a forged button, refused on unpack
    arg: str = ""


class ListCb(CallbackData, prefix="ls"):
    """A page of a list: kind my|queue|staff; for the queue an optional status and place filter."""

    kind: str
    page: int = Field(ge=0, lt=PAGE_LIMIT)
    status: str = ""
    loc: str = ""


def safe_fragment(text: str, max_bytes: int = 24) -> str:
    """A piece of user text fit for callback data: no separators, cut on a character boundary."""
    cleaned = text.replace(":", " ").strip()
    encoded = cleaned.encode()[:max_bytes]
    return encoded.decode(errors="ignore").strip()


class BroadcastCb(CallbackData, prefix="bc"):
    """aud (choose the audience, `arg`), confirm or cancel broadcast `id`."""

    action: str
    id: int = Field(default=0, ge=0, lt=DB_ID_LIMIT)
    arg: str = ""
