"""The typed vocabularies: the schema's CHECK constraints list exactly the enums' values, the
callback verbs stay unambiguous, and every button either process builds fits in 64 bytes."""

from __future__ import annotations

import re
import typing
from enum import StrEnum

import pytest
from sqlalchemy import CheckConstraint

from bot.routers import requests as bot_requests
from core import limits
from core.callbacks import (
    BroadcastCb,
    BroadcastVerb,
    CardVerb,
    ListCb,
    ListKind,
    RequestCb,
    safe_fragment,
)
from core.commands import AttachmentIn
from core.domain import (
    Action,
    ErasureMode,
    ErasureReason,
    EventAction,
    Priority,
    QueueOnly,
    Status,
    Viewer,
)
from core.roles import AUDIENCE_ROLES, Audience, Role
from core.states import BroadcastState, OutboxState
from core.user_input import DB_ID_LIMIT, PAGE_LIMIT, TELEGRAM_ID_LIMIT
from db.models import Base, Broadcast, Outbox, Request, User
from workers.desk import render

# --- The schema and the enums -----------------------------------------------------------------

_IN_LIST = re.compile(r"^(\w+) IN \(([^)]*)\)$")

# (table, column) -> the values the code knows.
VOCABULARIES: dict[tuple[str, str], set[str]] = {
    ("users", "role"): {r.value for r in Role},
    ("requests", "status"): {s.value for s in Status},
    ("requests", "priority"): {p.value for p in Priority},
    ("attachments", "kind"): set(typing.get_args(AttachmentIn.model_fields["kind"].annotation)),
    ("outbox", "state"): {s.value for s in OutboxState},
    ("broadcasts", "state"): {s.value for s in BroadcastState},
    ("broadcasts", "audience"): {a.value for a in Audience},
    ("erasure_audit", "reason"): {r.value for r in ErasureReason},
    ("erasure_audit", "mode"): {m.value for m in ErasureMode},
}


def _checked_vocabularies() -> dict[tuple[str, str], list[str]]:
    """Every `column IN ('a', 'b')` CHECK constraint of the models."""
    found: dict[tuple[str, str], list[str]] = {}
    for table in Base.metadata.sorted_tables:
        for constraint in table.constraints:
            if not isinstance(constraint, CheckConstraint):
                continue
            match = _IN_LIST.match(str(constraint.sqltext).strip())
            if match is None:
                continue  # a range or a comparison, not a vocabulary
            column, values = match.groups()
            found[(table.name, column)] = re.findall(r"'([^']*)'", values)
    return found


def test_every_check_constraint_lists_exactly_its_enums_values() -> None:
    checked = _checked_vocabularies()
    assert set(checked) == set(VOCABULARIES), "a vocabulary CHECK without an enum (or the reverse)"
    for key, values in checked.items():
        assert len(values) == len(set(values)), key
        assert set(values) == VOCABULARIES[key], key


def test_model_defaults_are_enum_values() -> None:
    assert Outbox.__table__.c.state.default.arg == OutboxState.PENDING
    assert Broadcast.__table__.c.state.default.arg == BroadcastState.DRAFT


def test_history_records_every_transition_by_its_action() -> None:
    assert {a.value for a in Action} <= {e.value for e in EventAction}
    assert all(EventAction.of(a) == a for a in Action)


def test_audiences_are_defined_once_by_role() -> None:
    assert set(AUDIENCE_ROLES) == set(Audience)
    assert AUDIENCE_ROLES[Audience.EVERYONE] == frozenset(Role)
    assert AUDIENCE_ROLES[Audience.RESIDENTS] | AUDIENCE_ROLES[Audience.STAFF] == frozenset(Role)


# --- Callback data -------------------------------------------------------------------------------


def test_card_verbs_and_actions_never_share_a_value() -> None:
    # RequestCb.action is either: one string must name one of them.
    assert not {a.value for a in Action} & {v.value for v in CardVerb}


@pytest.mark.parametrize("verb", [*Action, *CardVerb])
def test_request_verbs_pack_as_their_value_and_unpack_to_themselves(
    verb: Action | CardVerb,
) -> None:
    data = RequestCb(action=verb, id=7, arg="x").pack()
    assert data == f"rq:{verb.value}:7:x"
    assert RequestCb.unpack(data).action is verb


def test_list_buttons_of_before_the_queue_filters_still_unpack() -> None:
    old = ListCb.unpack("ls:queue:2:new:Yard")
    assert (old.kind, old.page, old.status, old.loc, old.pri, old.only) == (
        "queue",
        2,
        "new",
        "Yard",
        "",
        "",
    )


@pytest.mark.parametrize(
    "data", ["rq:nonsense:7:", "rq::7:", "ls:nonsense:0::", "ls:nonsense:0::::", "bc:nonsense:1:"]
)
def test_unknown_verbs_do_not_unpack(data: str) -> None:
    cb = {"rq": RequestCb, "ls": ListCb, "bc": BroadcastCb}[data[:2]]
    with pytest.raises(ValueError):
        cb.unpack(data)


def test_broadcast_buttons_unpack_to_their_enums() -> None:
    aud = BroadcastCb.unpack(BroadcastCb(action=BroadcastVerb.AUDIENCE, arg=Audience.STAFF).pack())
    assert aud.action is BroadcastVerb.AUDIENCE and aud.arg is Audience.STAFF
    assert BroadcastCb(action=BroadcastVerb.CONFIRM, id=5).pack() == "bc:confirm:5:"
    assert BroadcastCb.unpack("bc:cancel:5:").arg is None
    with pytest.raises(ValueError):
        BroadcastCb.unpack("bc:aud:0:nobody")


def _longest(values: typing.Iterable[str]) -> str:
    return max(values, key=lambda v: len(v.encode()))


def _fits(data: str) -> None:
    assert len(data.encode()) <= limits.CALLBACK_DATA_MAX, data


MAX_DB_ID = DB_ID_LIMIT - 1
REQUEST_ARGS = [
    *(p.value for p in Priority),  # SET_PRIORITY
    "5",  # RATE
    str(TELEGRAM_ID_LIMIT - 1),  # ASSIGN_TO
]


@pytest.mark.parametrize("verb", [*Action, *CardVerb])
def test_request_buttons_fit_for_the_longest_values(verb: Action | CardVerb) -> None:
    _fits(RequestCb(action=verb, id=MAX_DB_ID, arg=_longest(REQUEST_ARGS)).pack())


@pytest.mark.parametrize("kind", list(ListKind))
def test_list_buttons_fit_for_the_longest_values(kind: ListKind) -> None:
    # The place filter is cut to QUEUE_FILTER_BYTES; multi-byte letters are the worst case.
    loc = safe_fragment("Подъезд " * 20, render.QUEUE_FILTER_BYTES)
    assert len(loc.encode()) <= render.QUEUE_FILTER_BYTES
    status = _longest(s.value for s in Status)
    pri, only = _longest(p.value for p in Priority), _longest(o.value for o in QueueOnly)
    _fits(ListCb(kind=kind, page=PAGE_LIMIT - 1, status=status, loc=loc, pri=pri, only=only).pack())


@pytest.mark.parametrize("verb", list(BroadcastVerb))
def test_broadcast_buttons_fit_for_the_longest_values(verb: BroadcastVerb) -> None:
    audience = Audience(_longest(a.value for a in Audience))
    _fits(BroadcastCb(action=verb, id=MAX_DB_ID, arg=audience).pack())


def _data(keyboard: dict[str, typing.Any]) -> list[str]:
    return [b["callback_data"] for row in keyboard["inline_keyboard"] for b in row]


ADMIN_AUTHOR = Viewer(Role.ADMIN, is_author=True, is_assignee=True)


@pytest.mark.parametrize("status", list(Status))
def test_the_workers_buttons_fit_for_the_longest_ids(status: Status) -> None:
    """What the desk draws (workers.kit.button asserts the limit too), at the largest ids."""
    request = Request(id=MAX_DB_ID, status=status.value, rating=None, title="t" * 100)
    staff = [User(id=1, telegram_id=TELEGRAM_ID_LIMIT - 1, username="u" * 32)]
    loc = safe_fragment("Подъезд " * 20, render.QUEUE_FILTER_BYTES)
    keyboards = [
        render.card_keyboard(request, ADMIN_AUTHOR, "en", reopen_open=True),
        render.new_request_keyboard(MAX_DB_ID, "en"),
        render.assignee_keyboard(MAX_DB_ID, staff, "en"),
        render.list_keyboard(
            [request],
            "en",
            kind=ListKind.QUEUE,
            page=PAGE_LIMIT - 2,
            pages=PAGE_LIMIT,
            status=status.value,
            loc=loc,
        ),
        {"inline_keyboard": [render.rating_row(MAX_DB_ID)]},
    ]
    for keyboard in keyboards:
        for data in _data(keyboard):
            _fits(data)


def test_the_bots_buttons_fit_for_the_longest_ids() -> None:
    for markup in (
        bot_requests._priority_keyboard(MAX_DB_ID, "en"),
        bot_requests._skip_keyboard(MAX_DB_ID, "en"),
    ):
        for row in markup.inline_keyboard:
            for button in row:
                assert button.callback_data is not None
                _fits(button.callback_data)
                RequestCb.unpack(button.callback_data)  # and the bot parses what it drew


def test_enums_are_str_enums() -> None:
    # Stored and packed as their values: plain strings to the database, JSON and Telegram.
    for enum in (OutboxState, BroadcastState, EventAction, Audience, CardVerb, ListKind):
        assert issubclass(enum, StrEnum)
        assert all(str(member) == member.value for member in enum)
