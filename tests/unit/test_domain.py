"""The status machine: every allowed and forbidden transition, and random walks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import (
    FINAL_STATUSES,
    TRANSITIONS,
    Action,
    Refused,
    Status,
    Viewer,
    available_actions,
    decide,
)
from core.roles import Role

RESIDENT_AUTHOR = Viewer(Role.RESIDENT, is_author=True, is_assignee=False)
OTHER_RESIDENT = Viewer(Role.RESIDENT, is_author=False, is_assignee=False)
STAFF = Viewer(Role.STAFF, is_author=False, is_assignee=False)
ASSIGNEE = Viewer(Role.STAFF, is_author=False, is_assignee=True)
ADMIN = Viewer(Role.ADMIN, is_author=False, is_assignee=False)
VIEWERS = [RESIDENT_AUTHOR, OTHER_RESIDENT, STAFF, ASSIGNEE, ADMIN]

EXPECTED = {
    # (from, action): (to, viewers allowed)
    (Status.NEW, Action.ACCEPT): (Status.ACCEPTED, {STAFF, ASSIGNEE, ADMIN}),
    (Status.REOPENED, Action.ACCEPT): (Status.ACCEPTED, {STAFF, ASSIGNEE, ADMIN}),
    (Status.NEW, Action.ASSIGN): (Status.ACCEPTED, {ADMIN}),
    (Status.REOPENED, Action.ASSIGN): (Status.ACCEPTED, {ADMIN}),
    (Status.ACCEPTED, Action.ASSIGN): (Status.ACCEPTED, {ADMIN}),
    (Status.IN_PROGRESS, Action.ASSIGN): (Status.IN_PROGRESS, {ADMIN}),
    (Status.ACCEPTED, Action.START): (Status.IN_PROGRESS, {ASSIGNEE, ADMIN}),
    (Status.IN_PROGRESS, Action.DONE): (Status.DONE, {ASSIGNEE, ADMIN}),
    (Status.NEW, Action.REJECT): (Status.REJECTED, {STAFF, ASSIGNEE, ADMIN}),
    (Status.ACCEPTED, Action.REJECT): (Status.REJECTED, {STAFF, ASSIGNEE, ADMIN}),
    (Status.IN_PROGRESS, Action.REJECT): (Status.REJECTED, {STAFF, ASSIGNEE, ADMIN}),
    (Status.REOPENED, Action.REJECT): (Status.REJECTED, {STAFF, ASSIGNEE, ADMIN}),
    (Status.NEW, Action.CANCEL): (Status.CANCELLED, {RESIDENT_AUTHOR}),
    (Status.DONE, Action.REOPEN): (Status.REOPENED, {RESIDENT_AUTHOR}),
}


def test_the_table_is_the_design() -> None:
    assert {k: v.to for k, v in TRANSITIONS.items()} == {k: v[0] for k, v in EXPECTED.items()}


@pytest.mark.parametrize(
    ("status", "action", "viewer"), list(itertools.product(Status, Action, VIEWERS))
)
def test_every_transition_for_every_viewer(status: Status, action: Action, viewer: Viewer) -> None:
    expected = EXPECTED.get((status, action))
    note = "a reason"
    if expected is not None and viewer in expected[1]:
        assert decide(status, action, viewer, note=note) is expected[0]
        assert action in available_actions(status, viewer)
    else:
        with pytest.raises(Refused):
            decide(status, action, viewer, note=note)
        assert action not in available_actions(status, viewer)


def test_authorization_comes_before_state() -> None:
    # A forged Accept from a resident learns nothing about the request's state.
    for status in Status:
        with pytest.raises(Refused, match=r"refused\.not_allowed"):
            decide(status, Action.ACCEPT, OTHER_RESIDENT)


def test_reject_needs_a_reason() -> None:
    for note in (None, "", "   "):
        with pytest.raises(Refused, match=r"refused\.reason_required"):
            decide(Status.NEW, Action.REJECT, STAFF, note=note)


def test_reopen_only_within_the_window() -> None:
    with pytest.raises(Refused, match=r"refused\.reopen_window"):
        decide(Status.DONE, Action.REOPEN, RESIDENT_AUTHOR, reopen_window_open=False)


def test_final_states_are_final() -> None:
    for status in FINAL_STATUSES:
        assert all(not available_actions(status, v) for v in VIEWERS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Action)), st.sampled_from(VIEWERS)), max_size=30))
def test_random_action_sequences_never_reach_an_invalid_state(
    steps: list[tuple[Action, Viewer]],
) -> None:
    status, history = Status.NEW, [Status.NEW]
    for action, viewer in steps:
        try:
            new = decide(status, action, viewer, note="why")
        except Refused:
            continue
        assert (status, action) in TRANSITIONS  # only a tabled transition ever happens
        status = new
        history.append(status)
        assert status in Status
    # Once rejected or cancelled, nothing moves it again.
    for i, s in enumerate(history):
        if s in FINAL_STATUSES:
            assert all(h == s for h in history[i:])
    # Done is reached only through in_progress.
    for before, after in itertools.pairwise(history):
        if after is Status.DONE and before is not Status.DONE:
            assert before is Status.IN_PROGRESS
