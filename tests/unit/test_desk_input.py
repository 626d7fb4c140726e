"""Garbage ids reaching the worker: 0, negative, beyond 64 bits, or naming nothing. Commands are
built without validation (the worker must not rely on the bot's checks): each handler answers
with a refusal or a page in range, and never raises."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from core import commands as c
from core.domain import Action, Priority
from tests.support.follow_ups import run_follow_ups_inline
from tests.support.sandbox_api import SandboxAPI
from tests.unit.test_desk import ADMIN, RESIDENT, STAFF, Desk, make_desk

NOTHING = 10**6  # fits in BIGINT, but no such request or user
GARBAGE = [0, -1, -(2**70), 2**63, 2**70, NOTHING]
NOT_ALLOWED = "⛔ You are not allowed to do that."


@pytest.fixture(autouse=True)
def no_scheduling(monkeypatch: pytest.MonkeyPatch) -> None:
    run_follow_ups_inline(monkeypatch)


@pytest.fixture
def desk(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> Desk:
    return make_desk(db, sandbox, monkeypatch)


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (c.ShowRequest, {}),
        (c.TransitionRequest, {"action": Action.ACCEPT}),
        (c.ShowAssignees, {}),
        (c.AddComment, {"text": "hello"}),
        (c.ChangePriority, {"priority": Priority.URGENT}),
        (c.RateRequest, {"rating": 5}),
    ],
)
def test_a_request_id_naming_nothing_is_refused(
    desk: Desk, model: type[c.Command], fields: dict[str, Any]
) -> None:
    rid = desk.create()
    before = desk.request(rid)
    for bad in GARBAGE:
        desk.run(model, ADMIN, raw=True, request_id=bad, **fields)
        assert desk.texts(ADMIN)[-1] == f"Request #{bad} does not exist."
        # A resident is not even told whether it exists.
        desk.run(model, RESIDENT, raw=True, request_id=bad, **fields)
        assert desk.texts(RESIDENT)[-1] == NOT_ALLOWED
    after = desk.request(rid)
    assert (after.status, after.priority, after.version) == (
        before.status,
        before.priority,
        before.version,
    )


def test_an_assignee_naming_nobody_is_refused(desk: Desk) -> None:
    rid = desk.create()
    for bad in GARBAGE:
        desk.run(
            c.TransitionRequest, ADMIN, raw=True, request_id=rid, action=Action.ASSIGN, assignee=bad
        )
        assert desk.texts(ADMIN)[-1] == f"{bad} is not staff."
    assert (desk.request(rid).status, desk.request(rid).assignee_id) == ("new", None)


def test_a_rating_out_of_range_is_refused(desk: Desk) -> None:
    rid = desk.create()
    for action in (Action.ACCEPT, Action.START, Action.DONE):
        desk.run(c.TransitionRequest, STAFF, request_id=rid, action=action)
    for bad in (0, -1, 6, 2**70):
        desk.run(c.RateRequest, RESIDENT, raw=True, request_id=rid, rating=bad)
        assert desk.texts(RESIDENT)[-1] == "Only the author can rate a request, once it is done."
    assert desk.request(rid).rating is None


@pytest.mark.parametrize("target", ["0", "-1", str(-(2**70)), str(2**63), str(2**70), "1000000"])
def test_grant_to_an_id_naming_nobody_is_refused(desk: Desk, target: str) -> None:
    desk.run(c.SetRole, ADMIN, raw=True, target=target, role=None)
    assert desk.texts(ADMIN)[-1].startswith(f"I don't know {target}.")


def test_grant_to_a_malformed_target_is_refused(desk: Desk) -> None:
    for target in ("@", "@@", "²", "-²", "9" * 5000):
        desk.run(c.SetRole, ADMIN, raw=True, target=target, role=None)
        assert desk.texts(ADMIN)[-1].startswith(f"I don't know {target[:10]}")


def test_pages_out_of_range_show_the_nearest_page(desk: Desk) -> None:
    ids = [desk.create() for _ in range(7)]
    # The last request of the first page: the newest first, or (all alike) the oldest first.
    for model, user, title, edge in (
        (c.ShowMyRequests, RESIDENT, "Your requests", ids[2]),
        (c.ShowQueue, STAFF, "Queue", ids[4]),
    ):
        for page, shown in ((-1, 1), (-(2**70), 1), (2, 2), (2**63, 2), (2**70, 2)):
            desk.run(model, user, raw=True, page=page, edge=edge, edit_message_id=None)
            text = desk.texts(user)[-1]
            assert text.startswith(title) and f"(page {shown} of 2)" in text
        # No row to go on from: the first page, whatever its number says.
        for garbage in (None, 0, -(2**70), 2**63, 2**70, NOTHING, -NOTHING):
            desk.run(model, user, raw=True, page=1, edge=garbage, edit_message_id=None)
            text = desk.texts(user)[-1]
            assert text.startswith(title) and "(page 1 of 2)" in text


def test_a_staff_page_out_of_range_shows_the_nearest_page(desk: Desk) -> None:
    for page in (-1, 2**70):
        desk.run(c.ListStaff, ADMIN, raw=True, page=page, edit_message_id=None)
        assert "(open requests; page 1 of 1)" in desk.texts(ADMIN)[-1]


def test_a_bad_message_id_to_edit_gets_a_new_message(desk: Desk) -> None:
    desk.create()
    desk.run(c.ShowMyRequests, RESIDENT)
    (listing,) = [m for m in desk.sandbox.messages(RESIDENT) if m["text"].startswith("Your")]
    for bad in (0, -1, 2**70):
        desk.run(c.ShowMyRequests, RESIDENT, raw=True, page=0, edit_message_id=bad)
    lists = [m for m in desk.sandbox.messages(RESIDENT) if m["text"].startswith("Your")]
    assert len(lists) == 4 and not any(m["edited"] for m in lists)
    assert lists[0]["message_id"] == listing["message_id"]
