"""Callback data of inline buttons: one definition for the worker (which draws most buttons)
and the bot (which parses the presses). Packed data stays under Telegram's 64 bytes; the
worker re-checks everything a button claims (it can be forged).

Every verb is a StrEnum, so data that names an unknown one fails to unpack (the fallback
router answers the press as stale). The values are the strings already in users' chats: keep
them."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

from core.domain import Action, OnDemandReport
from core.roles import Audience
from core.user_input import DB_ID_LIMIT, PAGE_LIMIT


class CardVerb(StrEnum):
    """A request button that is not a domain Action (those are `core.domain.Action`: accept,
    start, cancel and reopen apply at once; reject and done ask for a note first; assign shows
    the staff to choose from, then ASSIGN_TO applies it). Values differ from Action's."""

    OPEN = "open"  # show the card
    COMMENT = "comment"  # ask for a comment
    PRIORITY_MENU = "priority"  # show the priorities
    SET_PRIORITY = "setprio"  # arg: the priority
    RATE = "rate"  # arg: 1-5
    ASSIGN_TO = "assignto"  # arg: the assignee's Telegram id
    SKIP_NOTE = "done_skip"  # close without the closing note asked for
    FILES_DONE = "files"  # add the files sent since the comment was asked for


class RequestCb(CallbackData, prefix="rq"):
    """An action on request `id`: a domain Action or a CardVerb (disjoint values, so the packed
    data is the same string it always was). `arg` carries the chosen value (priority, rating,
    assignee's Telegram id)."""

    action: Action | CardVerb
    id: int = Field(gt=0, lt=DB_ID_LIMIT)  # out of range: a forged button, refused on unpack
    arg: str = ""


class ListKind(StrEnum):
    MY = "my"
    MINE = "mine"  # staff: assigned to me
    QUEUE = "queue"
    STAFF = "staff"
    FIND = "find"  # staff: search results; the query travels in `loc`


class ListCb(CallbackData, prefix="ls"):
    """A page of a list; for the queue optional status, priority, place and "only" filters
    (every page button carries them all, so every page lists what the first one did).

    `edge` names the page by a row of the page shown: the id of its last row, for the rows
    after it (▶), or minus the id of its first, for those before it (◀); none, the first
    page. One signed number: every byte counts here. `page` only numbers the page shown."""

    kind: ListKind
    page: int = Field(ge=0, lt=PAGE_LIMIT)
    status: str = ""
    loc: str = ""
    pri: str = ""
    only: str = ""
    edge: int | None = Field(default=None, gt=-DB_ID_LIMIT, lt=DB_ID_LIMIT)

    @classmethod
    def unpack(cls, value: str) -> ListCb:
        # Buttons still in people's chats from before the edge (one part fewer), or from
        # before the priority and "only" filters too (three fewer): empty parts, the defaults.
        missing = len(cls.model_fields) - value.count(cls.__separator__)
        if missing in (1, 3):
            value += cls.__separator__ * missing
        return super().unpack(value)


def safe_fragment(text: str, max_bytes: int = 24) -> str:
    """A piece of user text fit for callback data: no separators, cut on a character boundary."""
    cleaned = text.replace(":", " ").strip()
    encoded = cleaned.encode()[:max_bytes]
    return encoded.decode(errors="ignore").strip()


class AreaCb(CallbackData, prefix="ar"):
    """Subscribe to area `id`, or unsubscribe when subscribed (staff; the worker checks)."""

    id: int = Field(gt=0, lt=DB_ID_LIMIT)


class BroadcastVerb(StrEnum):
    AUDIENCE = "aud"  # arg: the audience chosen
    CONFIRM = "confirm"
    CANCEL = "cancel"


class BroadcastCb(CallbackData, prefix="bc"):
    """Choose the audience (`arg`), confirm or cancel broadcast `id`."""

    action: BroadcastVerb
    id: int = Field(default=0, ge=0, lt=DB_ID_LIMIT)
    arg: Audience | None = None  # packed as "" when there is none


class ReportCb(CallbackData, prefix="rp"):
    """Another period of the report (admins; the worker checks the role)."""

    kind: OnDemandReport


class PrivacyVerb(StrEnum):
    ERASE = "erase"
    KEEP = "keep"


class PrivacyCb(CallbackData, prefix="pv"):
    """The answer to /forget_me's question: erase everything, or keep it."""

    verb: PrivacyVerb
