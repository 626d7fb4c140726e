"""Inline keyboards as Bot API JSON, ready for an outbox row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core import limits

Keyboard = dict[str, Any]


def button(text: str, data: str) -> dict[str, str]:
    assert len(data.encode()) <= limits.CALLBACK_DATA_MAX, data
    return {"text": text, "callback_data": data}


def inline(rows: Sequence[Sequence[dict[str, str]]]) -> Keyboard:
    return {"inline_keyboard": [list(row) for row in rows if row]}
