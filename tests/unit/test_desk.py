"""The request desk on the worker side: handlers on SQLite, replies read back from the sandbox."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import commands as c
from core.callbacks import ListCb, RequestCb
from core.domain import Action, Priority, QueueOnly
from core.menu import commands_for
from core.roles import Role
from core.settings import get_settings
from core.texts import t
from db.models import Comment, Request, RequestEvent, User
from tests.support.follow_ups import run_follow_ups_inline
from tests.support.sandbox_api import SandboxAPI
from workers.command_tasks import run_command
from workers.commands import HANDLERS

RESIDENT, OTHER, STAFF, STAFF2, ADMIN = 1001, 1002, 2001, 2002, 3001
_updates = itertools.count(1000)


@pytest.fixture(autouse=True)
def no_scheduling(monkeypatch: pytest.MonkeyPatch) -> None:
    run_follow_ups_inline(monkeypatch)


class Desk:
    def __init__(self, engine: Engine, sandbox: SandboxAPI) -> None:
        self.engine, self.sandbox = engine, sandbox

    def run(
        self,
        model: type[c.Command],
        user: int,
        *,
        raw: bool = False,
        profile: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """`raw`: built without validation, as a forged or buggy producer could send it;
        `profile`: the actor's Telegram profile, if not the default one."""
        build = model.model_construct if raw else model
        actor = {"first_name": f"u{user}", "username": f"u{user}", **(profile or {})}
        command = build(
            idempotency_key=f"tg-update:{next(_updates)}",
            actor=c.Actor(user_id=user, chat_id=user, **actor),
            **fields,
        )
        # A test's subclass of a command runs with the command's handler.
        handler = next(HANDLERS[m] for m in model.__mro__ if m in HANDLERS)
        run_command(command, handler)

    def last(self, user: int) -> dict[str, Any]:
        return self.sandbox.messages(user)[-1]

    def texts(self, user: int) -> list[str]:
        return [m["text"] or "" for m in self.sandbox.messages(user)]

    def request(self, request_id: int = 1) -> Request:
        with Session(self.engine) as s:
            request = s.get(Request, request_id)
            assert request is not None
            return request

    def buttons(self, message: dict[str, Any]) -> list[str]:
        markup = message.get("reply_markup") or {}
        return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]

    def create(self, user: int = RESIDENT, **fields: Any) -> int:
        values = {
            "title": "Broken light",
            "description": "Room 101 is dark",
            "location": "Room 101",
            "priority": Priority.NORMAL,
            **fields,
        }
        self.run(c.CreateRequest, user, **values)
        with Session(self.engine) as s:
            return int(s.scalars(select(Request.id).order_by(Request.id.desc())).first() or 0)


@pytest.fixture
def desk(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> Desk:
    return make_desk(db, sandbox, monkeypatch)


def make_desk(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """Five users with their roles, chats open at the sandbox (a fixture's body, shared)."""
    # Pacing is the notification engine's business (tested there), not these handlers'.
    monkeypatch.setenv("RATE_PRIVATE_BURST", "1000")
    monkeypatch.setenv("RATE_BOT_PER_SECOND", "1000")
    d = Desk(db, sandbox)
    for user in (RESIDENT, OTHER, STAFF, STAFF2, ADMIN):
        sandbox.send_text(user, "/start")  # the chats exist at "Telegram"
        d.run(c.RegisterUser, user)
    with Session(db) as s:
        for user, role in ((STAFF, Role.STAFF), (STAFF2, Role.STAFF), (ADMIN, Role.ADMIN)):
            s.scalars(select(User).where(User.telegram_id == user)).one().role = role.value
        s.commit()
    sandbox.reset()
    sandbox.configure(flood_limits=False)
    for user in (RESIDENT, OTHER, STAFF, STAFF2, ADMIN):
        sandbox._call("POST", "/sandbox/users", {"id": user})
    return d


def test_creating_tells_the_author_and_every_staff_member(desk: Desk) -> None:
    photos = [c.AttachmentIn(kind="photo", file_id=f) for f in _sandbox_files(desk, 2)]
    rid = desk.create(attachments=photos, title="<b>x</b> & <script>")
    assert desk.texts(RESIDENT) == [
        t("created", "en", id=rid).replace("<b>", "").replace("</b>", "")
    ]
    for member in (STAFF, STAFF2, ADMIN):
        album, notice = desk.sandbox.messages(member)[-2:]
        assert album["media_group_id"] is not None or album["photo"]  # attachments re-sent
        assert "<b>x</b> & <script>" in notice["text"]  # shown literally, not as markup
        assert RequestCb(action="accept", id=rid).pack() in desk.buttons(notice)
        assert RequestCb(action="reject", id=rid).pack() in desk.buttons(notice)
    assert desk.texts(OTHER) == []


def _sandbox_files(desk: Desk, count: int) -> list[str]:
    return [
        desk.sandbox._call("POST", "/sandbox/photos", {"user_id": RESIDENT})["file_id"]
        for _ in range(count)
    ]


def test_full_lifecycle_with_history_and_notifications(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.ACCEPT)
    assert desk.request(rid).status == "accepted"
    assert "accepted" in desk.texts(RESIDENT)[-1] and "@u2001" in desk.texts(RESIDENT)[-1]
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.START)
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.DONE, note="New bulb")
    done_notice = desk.last(RESIDENT)
    assert "done" in done_notice["text"] and "New bulb" in done_notice["text"]
    assert RequestCb(action="rate", id=rid, arg="5").pack() in desk.buttons(done_notice)
    desk.run(c.RateRequest, RESIDENT, request_id=rid, rating=5)
    desk.run(c.RateRequest, RESIDENT, request_id=rid, rating=1)  # only once
    request = desk.request(rid)
    assert (request.status, request.rating) == ("done", 5)
    with Session(desk.engine) as s:
        events = s.scalars(select(RequestEvent.action).where(RequestEvent.request_id == rid)).all()
        closing = s.scalars(select(Comment.text)).all()
    assert events == ["created", "accept", "start", "done", "rated"]
    assert closing == ["New bulb"]

    desk.run(c.ShowRequest, RESIDENT, request_id=rid)
    card = desk.last(RESIDENT)
    assert card["text"].startswith(f"#{rid} Broken light")
    assert "History" in card["text"] and "★★★★★" in card["text"]
    assert RequestCb(action="reopen", id=rid).pack() in desk.buttons(card)


def test_two_staff_accept_one_wins_the_other_is_told_who(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.ACCEPT)
    desk.run(c.TransitionRequest, STAFF2, request_id=rid, action=Action.ACCEPT)
    assert desk.texts(STAFF2)[-1] == f"Request #{rid} was already taken by @u2001."
    assert desk.request(rid).assignee_id is not None


def test_forged_buttons_change_nothing(desk: Desk) -> None:
    rid = desk.create()
    before = desk.request(rid)
    for user, action in (
        (OTHER, Action.ACCEPT),
        (RESIDENT, Action.ACCEPT),
        (OTHER, Action.CANCEL),
        (RESIDENT, Action.ASSIGN),
        (STAFF, Action.ASSIGN),
        (STAFF, Action.CANCEL),
    ):
        desk.run(c.TransitionRequest, user, request_id=rid, action=action, assignee=STAFF)
        assert desk.texts(user)[-1] == "⛔ You are not allowed to do that."
    desk.run(c.ShowRequest, OTHER, request_id=rid)  # a resident can't read others' requests
    assert desk.texts(OTHER)[-1] == "⛔ You are not allowed to do that."
    desk.run(c.RateRequest, OTHER, request_id=rid, rating=5)
    after = desk.request(rid)
    assert (after.status, after.assignee_id, after.version) == (
        before.status,
        before.assignee_id,
        before.version,
    )


def test_reject_needs_a_reason_which_the_author_sees(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.REJECT)
    assert desk.texts(STAFF)[-1] == "A reason is required to reject a request."
    desk.run(
        c.TransitionRequest, STAFF, request_id=rid, action=Action.REJECT, note="Not our <building>"
    )
    assert desk.request(rid).status == "rejected"
    assert "Reason: Not our <building>" in desk.texts(RESIDENT)[-1]


def test_cancel_by_the_author_while_new_only(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.TransitionRequest, RESIDENT, request_id=rid, action=Action.CANCEL)
    assert desk.request(rid).status == "cancelled"
    rid2 = desk.create()
    desk.run(c.TransitionRequest, STAFF, request_id=rid2, action=Action.ACCEPT)
    desk.run(c.TransitionRequest, RESIDENT, request_id=rid2, action=Action.CANCEL)
    assert desk.request(rid2).status == "accepted"
    assert desk.texts(RESIDENT)[-1] == f"Request #{rid2} is already accepted."


def _finish(desk: Desk, rid: int) -> None:
    for action in (Action.ACCEPT, Action.START, Action.DONE):
        desk.run(c.TransitionRequest, STAFF, request_id=rid, action=action)


def test_reopen_within_the_window_then_accept_again(desk: Desk) -> None:
    rid = desk.create()
    _finish(desk, rid)
    desk.run(c.TransitionRequest, RESIDENT, request_id=rid, action=Action.REOPEN)
    assert desk.request(rid).status == "reopened"
    assert "reopened" in desk.texts(STAFF)[-1]  # the assignee hears of it
    desk.run(c.TransitionRequest, STAFF2, request_id=rid, action=Action.ACCEPT)
    assert desk.request(rid).status == "accepted"


def test_reopen_after_the_window_is_refused(desk: Desk) -> None:
    rid = desk.create()
    _finish(desk, rid)
    with Session(desk.engine) as s:
        s.get(Request, rid).done_at = datetime.now(UTC) - timedelta(days=8)  # type: ignore[union-attr]
        s.commit()
    desk.run(c.TransitionRequest, RESIDENT, request_id=rid, action=Action.REOPEN)
    assert desk.request(rid).status == "done"
    assert "more than 7 days ago" in desk.texts(RESIDENT)[-1]


def test_done_requests_close_once_the_reopen_window_has_passed(desk: Desk) -> None:
    from core.domain import EventAction
    from db.models import RequestEvent
    from workers.upkeep import consistency, retention

    old, recent, still_open = desk.create(), desk.create(), desk.create()
    _finish(desk, old)
    _finish(desk, recent)
    with Session(desk.engine) as s:
        s.get(Request, old).done_at = datetime.now(UTC) - timedelta(days=8)  # type: ignore[union-attr]
        s.commit()
    assert retention.prune() == {"requests_closed": 1}
    assert retention.prune() == {}  # closed once
    closed = desk.request(old)
    assert (closed.status, closed.closed_at is not None) == ("closed", True)
    assert [desk.request(r).status for r in (recent, still_open)] == ["done", "new"]
    with Session(desk.engine) as s:
        last = s.scalars(
            select(RequestEvent).where(RequestEvent.request_id == old).order_by(RequestEvent.id)
        ).all()[-1]
        assert (last.action, last.from_status, last.to_status) == (
            EventAction.CLOSE,
            "done",
            "closed",
        )
    assert consistency.check().totals == {}  # a closed request keeps every invariant
    # Its author can no longer reopen or comment, but may still rate it.
    desk.run(c.TransitionRequest, RESIDENT, request_id=old, action=Action.REOPEN)
    assert desk.texts(RESIDENT)[-1] == (
        f"Request #{old} is closed: it was done more than 7 days ago. Please create a new one."
    )
    desk.run(c.AddComment, RESIDENT, request_id=old, text="Still broken")
    assert desk.texts(RESIDENT)[-1] == f"Comments are closed on request #{old}."
    desk.run(c.RateRequest, RESIDENT, request_id=old, rating=4)
    assert desk.request(old).rating == 4
    desk.run(c.ShowRequest, RESIDENT, request_id=old)
    card = desk.last(RESIDENT)
    assert "closed" in card["text"] and not any("reopen" in b for b in desk.buttons(card))
    desk.run(c.ShowRequest, RESIDENT, request_id=recent)
    assert any("reopen" in b for b in desk.buttons(desk.last(RESIDENT)))  # done: still may


def test_comments_reach_the_other_side(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.ACCEPT)
    desk.run(c.AddComment, STAFF, request_id=rid, text="Coming at 5")
    assert "Coming at 5" in desk.texts(RESIDENT)[-1]
    desk.run(c.AddComment, RESIDENT, request_id=rid, text="Thanks & see you")
    assert "Thanks & see you" in desk.texts(STAFF)[-1]
    desk.run(c.AddComment, OTHER, request_id=rid, text="me too")
    assert desk.texts(OTHER)[-1] == "⛔ You are not allowed to do that."


def test_admin_assigns_and_both_assignees_hear(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.ACCEPT)
    desk.run(c.ShowAssignees, ADMIN, request_id=rid)
    choose = desk.last(ADMIN)
    assert RequestCb(action="assignto", id=rid, arg=str(STAFF2)).pack() in desk.buttons(choose)
    desk.run(c.TransitionRequest, ADMIN, request_id=rid, action=Action.ASSIGN, assignee=STAFF2)
    assert "assigned to you" in desk.texts(STAFF2)[-1]
    assert "reassigned to @u2002" in desk.texts(STAFF)[-1]
    desk.run(c.ShowRequest, ADMIN, request_id=rid)
    assert "assigned to @u2002" in desk.texts(ADMIN)[-1]  # the history names the assignee
    desk.run(c.TransitionRequest, ADMIN, request_id=rid, action=Action.ASSIGN, assignee=RESIDENT)
    assert desk.texts(ADMIN)[-1] == f"{RESIDENT} is not staff."


def test_my_requests_newest_first_paginated(desk: Desk) -> None:
    ids = [desk.create(title=f"Problem {i}") for i in range(7)]
    desk.run(c.ShowMyRequests, RESIDENT)
    page = desk.last(RESIDENT)
    assert "page 1 of 2" in page["text"]
    opened = [d for d in desk.buttons(page) if d.startswith("rq:open")]
    assert opened == [RequestCb(action="open", id=i).pack() for i in reversed(ids[-5:])]
    # ▶: the requests after the page's last one; the first page has no ◀.
    assert desk.buttons(page)[-1:] == [ListCb(kind="my", page=1, edge=ids[2]).pack()]
    desk.run(c.ShowMyRequests, RESIDENT, page=1, edge=ids[2], edit_message_id=page["message_id"])
    edited = desk.last(RESIDENT)
    assert edited["edited"] and "page 2 of 2" in edited["text"]
    opened = [d for d in desk.buttons(edited) if d.startswith("rq:open")]
    assert opened == [RequestCb(action="open", id=i).pack() for i in (ids[1], ids[0])]
    # ◀: those before its first; the last page has no ▶.
    assert desk.buttons(edited)[-1:] == [ListCb(kind="my", page=0, edge=-ids[1]).pack()]
    desk.run(c.ShowMyRequests, OTHER)
    assert desk.texts(OTHER)[-1].startswith("You have no requests yet")


def test_queue_by_priority_then_age_with_filters(desk: Desk) -> None:
    low = desk.create(priority=Priority.LOW, location="Yard")
    urgent = desk.create(priority=Priority.URGENT, location="Room 5")
    normal = desk.create(priority=Priority.NORMAL, location="Room 7")
    urgent2 = desk.create(priority=Priority.URGENT, location="Yard")
    desk.run(c.TransitionRequest, STAFF, request_id=normal, action=Action.ACCEPT)
    desk.run(c.ShowQueue, STAFF)
    opened = [d for d in desk.buttons(desk.last(STAFF)) if d.startswith("rq:open")]
    assert opened == [RequestCb(action="open", id=i).pack() for i in (urgent, urgent2, normal, low)]
    desk.run(c.ShowQueue, STAFF, status="new", location="yard")
    opened = [d for d in desk.buttons(desk.last(STAFF)) if d.startswith("rq:open")]
    assert opened == [RequestCb(action="open", id=i).pack() for i in (urgent2, low)]
    desk.run(c.ShowQueue, RESIDENT)
    assert desk.texts(RESIDENT)[-1] == "⛔ You are not allowed to do that."


def test_queue_narrows_by_priority_and_to_the_unassigned(desk: Desk) -> None:
    taken = desk.create(priority=Priority.URGENT)
    free = desk.create(priority=Priority.URGENT)
    desk.create(priority=Priority.LOW)
    desk.run(c.TransitionRequest, STAFF, request_id=taken, action=Action.ACCEPT)
    desk.run(c.ShowQueue, STAFF, priority=Priority.URGENT)
    opened = [d for d in desk.buttons(desk.last(STAFF)) if d.startswith("rq:open")]
    assert opened == [RequestCb(action="open", id=i).pack() for i in (taken, free)]
    desk.run(c.ShowQueue, STAFF, priority=Priority.URGENT, only=QueueOnly.UNASSIGNED)
    page = desk.last(STAFF)
    opened = [d for d in desk.buttons(page) if d.startswith("rq:open")]
    assert opened == [RequestCb(action="open", id=free).pack()]
    assert "🔥 urgent, unassigned" in page["text"]
    # The press of a filter button is a command with all the filters it carries.
    both = ListCb(kind="queue", page=0, status="new", pri="urgent", only="u").pack()
    assert both in desk.buttons(page)


def test_long_texts_stay_under_telegrams_limit(desk: Desk) -> None:
    rid = desk.create(title="T" * 100, description="&" * 2000, location="L" * 200)
    for i in range(30):
        desk.run(c.AddComment, RESIDENT, request_id=rid, text=f"{i} " + "<" * 1990)
    desk.run(c.ShowRequest, RESIDENT, request_id=rid)
    card = desk.last(RESIDENT)  # the sandbox refuses anything over 4096 visible characters
    assert card["text"].startswith(f"#{rid} TTT") and len(card["text"]) <= 4096
    assert "earlier" in card["text"]


def test_grant_revoke_and_staff_list(desk: Desk) -> None:
    desk.run(c.SetRole, STAFF, target=str(OTHER), role=Role.STAFF)
    assert desk.texts(STAFF)[-1] == "⛔ You are not allowed to do that."
    desk.run(c.SetRole, ADMIN, target="@U1002", role=Role.STAFF)
    assert desk.texts(ADMIN)[-1] == "@u1002 is now staff."
    assert "staff" in desk.texts(OTHER)[-1]
    assert any(
        b["text"] == t("menu.queue", "en")
        for row in desk.last(OTHER)["reply_markup"]["keyboard"]
        for b in row
    )
    desk.run(c.SetRole, ADMIN, target="@nobody")
    assert "I don't know @nobody" in desk.texts(ADMIN)[-1]
    rid = desk.create()
    desk.run(c.TransitionRequest, OTHER, request_id=rid, action=Action.ACCEPT)
    desk.run(c.ListStaff, ADMIN)
    listing = desk.texts(ADMIN)[-1]
    assert "@u1002 — staff, 1" in listing and "@u3001 — an admin, 0" in listing
    # Who granted it, and when, under the list.
    changes = listing.split("Latest role changes")[1].splitlines()[1:]
    assert len(changes) == 1 and changes[0].endswith("@u1002: a resident → staff, by @u3001")
    desk.run(c.SetRole, ADMIN, target=str(OTHER))
    with Session(desk.engine) as s:
        assert s.scalars(select(User.role).where(User.telegram_id == OTHER)).one() == "resident"


def _commands(desk: Desk, chat_id: int | None = None) -> list[str]:
    """The "/" menu the sandbox would show in that private chat (None: everyone's default)."""
    scope = {"type": "chat", "chat_id": chat_id} if chat_id else {"type": "default"}
    answer = desk.sandbox._call(
        "POST", f"/bot{get_settings().token}/getMyCommands", {"scope": scope}
    )
    return [c["command"] for c in answer["result"]]


def test_each_role_gets_its_own_command_menu(desk: Desk) -> None:
    desk.run(c.SetRole, ADMIN, target=str(OTHER), role=Role.STAFF)
    assert _commands(desk, OTHER) == list(commands_for(Role.STAFF))
    assert "queue" in _commands(desk, OTHER) and "broadcast" not in _commands(desk, OTHER)
    desk.run(c.SetRole, ADMIN, target=str(OTHER), role=Role.ADMIN)
    assert _commands(desk, OTHER) == list(commands_for(Role.ADMIN))
    # Revoked: back to the default menu (the residents', set by the bot at its start).
    desk.run(c.SetRole, ADMIN, target=str(OTHER))
    assert _commands(desk, OTHER) == []
    # An admin by ADMIN_IDS gets theirs at /start.
    desk.run(c.RegisterUser, ADMIN)
    assert _commands(desk, ADMIN) == list(commands_for(Role.ADMIN))
    assert set(commands_for(Role.RESIDENT)) < set(commands_for(Role.STAFF))


def test_find_searches_texts_places_and_comments_for_staff_only(desk: Desk) -> None:
    light = desk.create(title="Light broken", description="Dark", location="Room 101")
    flicker = desk.create(title="Light flickers", description="On and off", location="Room 202")
    leak = desk.create(title="Leak", description="Water under the sink", location="Flat 7")
    desk.run(c.AddComment, STAFF, request_id=leak, text="Plumber booked for Friday")
    desk.run(c.FindRequests, STAFF, query="light 101")
    found = desk.last(STAFF)
    assert "Found «light 101»: 1 (page 1 of 1)" in found["text"]
    assert RequestCb(action="open", id=light).pack() in desk.buttons(found)
    desk.run(c.FindRequests, STAFF, query="plumber")  # in a comment
    assert desk.buttons(desk.last(STAFF))[0] == RequestCb(action="open", id=leak).pack()
    desk.run(c.FindRequests, STAFF, query="ceiling")
    assert desk.texts(STAFF)[-1] == "Nothing found for «ceiling»."
    desk.run(c.FindRequests, RESIDENT, query="light")
    assert desk.texts(RESIDENT)[-1] == "⛔ You are not allowed to do that."
    # Pages: newest first, the query carried by the buttons.
    lights = [
        desk.create(title=f"Light {n}", description="Dark", location="Hall") for n in range(7)
    ]
    desk.run(c.FindRequests, ADMIN, query="light")
    first = desk.last(ADMIN)
    assert "9 (page 1 of 2)" in first["text"]
    ahead = ListCb(kind="find", page=1, loc="light", edge=lights[2])
    assert ahead.pack() in desk.buttons(first)
    edit = first["message_id"]
    desk.run(c.FindRequests, ADMIN, query="light", page=1, edge=lights[2], edit_message_id=edit)
    second = desk.last(ADMIN)
    assert "page 2 of 2" in second["text"]
    opened = [d for d in desk.buttons(second) if d.startswith("rq:open")]
    newest_first = (lights[1], lights[0], flicker, light)
    assert opened == [RequestCb(action="open", id=i).pack() for i in newest_first]


def test_priority_change_by_staff_only(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.ChangePriority, RESIDENT, request_id=rid, priority=Priority.URGENT)
    assert desk.request(rid).priority == "normal"
    desk.run(c.ChangePriority, STAFF, request_id=rid, priority=Priority.URGENT)
    assert desk.request(rid).priority == "urgent"
    # The author is told (the text says which request and the new priority).
    told = desk.texts(RESIDENT)[-1]
    assert f"#{rid}" in told and "priority is now" in told and "rgent" in told


def test_the_authors_comment_reaches_the_assignee_or_every_staff_member(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.AddComment, RESIDENT, request_id=rid, text="Still broken, anyone?")
    for member in (STAFF, STAFF2, ADMIN):  # nobody is assigned: all of them
        assert "Still broken, anyone?" in desk.texts(member)[-1]
    desk.run(c.TransitionRequest, STAFF2, request_id=rid, action=Action.ACCEPT)
    before = {m: len(desk.texts(m)) for m in (STAFF, ADMIN)}
    desk.run(c.AddComment, RESIDENT, request_id=rid, text="Thank you, 5 pm is fine")
    assert "Thank you, 5 pm is fine" in desk.texts(STAFF2)[-1]
    assert {m: len(desk.texts(m)) for m in (STAFF, ADMIN)} == before
    desk.run(c.AddComment, STAFF2, request_id=rid, text="On my way")
    assert "On my way" in desk.texts(RESIDENT)[-1]


def test_card_of_escape_heavy_text_fits_and_terminates(desk: Desk) -> None:
    # Every character of every field escapes to 4-5 HTML characters: the card is trimmed by
    # what Telegram counts (visible characters), not by the longer HTML.
    rid = desk.create(title="&" * 100, description="<" * 2000, location="&" * 200)
    for _ in range(12):
        desk.run(c.AddComment, RESIDENT, request_id=rid, text="&" * 2000)
    desk.run(c.ShowRequest, RESIDENT, request_id=rid)
    card = desk.last(RESIDENT)  # the sandbox refuses over 4096 visible characters
    assert card["text"].startswith(f"#{rid} &&&") and len(card["text"]) <= 4096


def _roles(desk: Desk) -> dict[int, str]:
    with Session(desk.engine) as s:
        return {u.telegram_id or 0: u.role for u in s.scalars(select(User))}


def test_grant_by_username_goes_to_its_current_holder(desk: Desk) -> None:
    # RESIDENT was @Boss, then renamed at Telegram (and has sent nothing since); OTHER took
    # the name. The grant must reach OTHER, not the stale row.
    desk.run(c.ShowMyRequests, RESIDENT, profile={"username": "Boss"})
    desk.run(c.ShowMyRequests, OTHER, profile={"username": "boss"})
    desk.run(c.SetRole, ADMIN, target="@BOSS", role=Role.ADMIN)
    assert desk.texts(ADMIN)[-1] == "@boss is now an admin."
    assert (_roles(desk)[OTHER], _roles(desk)[RESIDENT]) == ("admin", "resident")
    with Session(desk.engine) as s:
        assert s.scalars(select(User.username).where(User.telegram_id == RESIDENT)).one() is None


def test_a_username_has_one_holder_whatever_its_case(desk: Desk) -> None:
    """So `/grant @name` can never pick between two people: the schema refuses a second one."""
    with Session(desk.engine) as s:
        for user, name in ((RESIDENT, "Twin"), (OTHER, "twin")):
            s.scalars(select(User).where(User.telegram_id == user)).one().username = name
        with pytest.raises(IntegrityError, match="uq_users_lower_username"):
            s.commit()


def test_queue_filter_with_a_colon_pages_through_the_same_requests(desk: Desk) -> None:
    ids = [desk.create(location=f"Block A: room {i}") for i in range(7)]
    desk.create(location="Block B: room 1")
    desk.run(c.ShowQueue, STAFF, location="a: room")
    first = desk.last(STAFF)
    assert "page 1 of 2" in first["text"]
    (forward,) = [d for d in desk.buttons(first) if d.startswith("ls:queue:1:")]
    press = ListCb.unpack(forward)  # what the bot turns the press into
    desk.run(
        c.ShowQueue,
        STAFF,
        page=press.page,
        edge=press.edge,
        status=press.status or None,
        location=press.loc or None,
        edit_message_id=first["message_id"],
    )
    second = desk.last(STAFF)
    assert second["edited"] and "«a room» (page 2 of 2)" in second["text"]
    opened = [d for d in desk.buttons(second) if d.startswith("rq:open")]
    assert opened == [RequestCb(action="open", id=i).pack() for i in ids[5:]]


def test_staff_list_is_paged_under_telegrams_limit(desk: Desk) -> None:
    with Session(desk.engine) as s:
        s.add_all(
            User(
                telegram_id=50_000 + i,
                first_name=f"n{i:03d} " + "Ж&" * 60,
                last_name="<L>" * 40,
                role=Role.STAFF.value,
            )
            for i in range(300)
        )
        s.commit()
    desk.run(c.ListStaff, ADMIN)
    first = desk.last(ADMIN)  # the sandbox refuses over 4096 visible characters
    pages = int(first["text"].split("page 1 of ")[1].split(")")[0])
    assert pages > 1
    seen: list[str] = []
    for page in range(pages):
        if page:  # ▶, as the bot turns it into a command
            *_, ahead = [ListCb.unpack(d) for d in desk.buttons(desk.last(ADMIN))]
            assert (ahead.page, ahead.edge is not None and ahead.edge > 0) == (page, True)
            edit = first["message_id"]
            desk.run(c.ListStaff, ADMIN, page=page, edge=ahead.edge, edit_message_id=edit)
        message = desk.last(ADMIN)
        assert message["message_id"] == first["message_id"] and len(message["text"]) <= 4096
        assert f"page {page + 1} of {pages}" in message["text"]
        seen += [line for line in message["text"].splitlines() if line.startswith("• ")]
    assert len(seen) == 303 and len(set(seen)) == 303  # the 300 and STAFF, STAFF2, ADMIN
    [back] = [ListCb.unpack(d) for d in desk.buttons(desk.last(ADMIN))]  # ◀ only
    assert back.page == pages - 2 and back.edge is not None and back.edge < 0


def test_mine_lists_what_is_assigned_to_the_staff_member_open_first(desk: Desk) -> None:
    done, still_open, others = desk.create(), desk.create(), desk.create()
    for rid in (done, still_open):
        desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.ACCEPT)
    desk.run(c.TransitionRequest, STAFF2, request_id=others, action=Action.ACCEPT)
    for action in (Action.START, Action.DONE):
        desk.run(c.TransitionRequest, STAFF, request_id=done, action=action)
    desk.run(c.ShowMine, STAFF)
    listed = desk.last(STAFF)
    assert listed["text"].startswith("Assigned to you")
    opened = [b for b in desk.buttons(listed) if b.startswith("rq:open:")]
    assert opened == [f"rq:open:{still_open}:", f"rq:open:{done}:"]
    desk.run(c.ShowMine, ADMIN)
    assert desk.texts(ADMIN)[-1] == t("mine.empty", "en")
    desk.run(c.ShowMine, RESIDENT)
    assert desk.texts(RESIDENT)[-1] == t("refused.not_allowed", "en")
