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
from db.requests import Page
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


@pytest.mark.parametrize(
    ("data", "pri", "only"),
    [
        ("ls:queue:2:new:Yard", "", ""),  # before the priority and "only" filters
        ("ls:queue:2:new:Yard:urgent:o", "urgent", "o"),  # before keyset pages
    ],
)
def test_list_buttons_of_before_still_unpack(data: str, pri: str, only: str) -> None:
    old = ListCb.unpack(data)
    assert (old.kind, old.page, old.status, old.loc, old.pri, old.only, old.edge) == (
        "queue",
        2,
        "new",
        "Yard",
        pri,
        only,
        None,  # the first page
    )
    assert ListCb.unpack(ListCb(kind="my", page=3, edge=-42).pack()).edge == -42


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


# Request and user ids below ten billion: the budget of a ◀ button's edge.
LONGEST_EDGE = -(10**10 - 1)


def _cut(limit: int) -> str:
    """The longest text a page button carries when cut to `limit` bytes."""
    return _longest(safe_fragment(text * 200, limit) for text in ("x", "Ж", "Подъезд ", "€"))


def _longest_list_buttons() -> dict[ListKind, ListCb]:
    """Each list's longest page button: the page number, edge and filters it can carry."""
    most = {"page": PAGE_LIMIT - 1, "edge": LONGEST_EDGE}
    queue = {
        "status": _longest(s.value for s in Status),
        "loc": _cut(render.QUEUE_FILTER_BYTES),
        "pri": _longest(p.value for p in Priority),
        "only": _longest(o.value for o in QueueOnly),
    }
    return {
        ListKind.QUEUE: ListCb(kind=ListKind.QUEUE, **most, **queue),
        ListKind.FIND: ListCb(kind=ListKind.FIND, **most, loc=_cut(render.FIND_QUERY_BYTES)),
        **{k: ListCb(kind=k, **most) for k in (ListKind.MY, ListKind.MINE, ListKind.STAFF)},
    }


@pytest.mark.parametrize("kind", list(ListKind))
def test_list_buttons_fit_for_the_longest_values(kind: ListKind) -> None:
    longest = _longest_list_buttons()[kind]
    _fits(longest.pack())
    assert ListCb.unpack(longest.pack()) == longest
    if kind is ListKind.QUEUE:  # the place filter's cut is as long as it can be
        with pytest.raises(ValueError, match="too long"):
            longest.model_copy(update={"loc": longest.loc + "x"}).pack()


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
    listed = Request(id=-LONGEST_EDGE, status=status.value, title="t" * 100)
    staff = [User(id=1, telegram_id=TELEGRAM_ID_LIMIT - 1, username="u" * 32)]
    longest = _longest_list_buttons()[ListKind.QUEUE]
    keyboards = [
        render.card_keyboard(request, ADMIN_AUTHOR, "en", reopen_open=True),
        render.new_request_keyboard(MAX_DB_ID, "en"),
        render.assignee_keyboard(MAX_DB_ID, staff, "en"),
        render.list_keyboard(
            Page([listed], 1, PAGE_LIMIT - 2, PAGE_LIMIT, has_prev=True, has_next=True),
            "en",
            kind=ListKind.QUEUE,
            status=status.value,
            loc=longest.loc,
            pri=longest.pri,
            only=longest.only,
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
