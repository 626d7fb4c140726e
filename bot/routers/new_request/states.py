"""The dialog's states, the callback data of its buttons, and what its text steps take."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup

from core import limits
from core.domain import Priority

CALLBACK_PREFIX = "np"


class NewRequest(StatesGroup):
    title = State()
    description = State()
    location = State()
    priority = State()
    attachments = State()
    confirm = State()


class Act(StrEnum):
    PRIORITY = "p"
    LOCATION = "l"
    SKIP = "s"
    CONTINUE = "c"
    SUBMIT = "ok"
    CANCEL = "x"


class DraftCb(CallbackData, prefix=CALLBACK_PREFIX):
    """An inline button of the dialog, e.g. "np:p:1f2e3d4c:high:" (well under 64 bytes)."""

    a: Act
    d: str  # the draft's token: buttons of another draft are stale
    p: Priority | None = None
    i: int | None = None  # index into the recent locations offered


@dataclass(frozen=True)
class TextStep:
    name: str
    limit: int
    ask: str
    next: State


TEXT_STEPS: dict[str | None, TextStep] = {
    NewRequest.title.state: TextStep(
        "title", limits.TITLE_MAX, "new.ask_title", NewRequest.description
    ),
    NewRequest.description.state: TextStep(
        "description", limits.DESCRIPTION_MAX, "new.ask_description", NewRequest.location
    ),
    NewRequest.location.state: TextStep(
        "location", limits.LOCATION_MAX, "new.ask_location", NewRequest.priority
    ),
}

# What each step says about input it can't take.
WRONG_INPUT: dict[str | None, str] = {
    NewRequest.title.state: "new.error.text_expected",
    NewRequest.description.state: "new.error.text_expected",
    NewRequest.location.state: "new.error.text_expected",
    NewRequest.priority.state: "new.error.priority_expected",
    NewRequest.attachments.state: "new.error.files_expected",
    NewRequest.confirm.state: "new.error.summary_expected",
}
