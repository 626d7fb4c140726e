"""Files added to an existing request: sent while a comment is asked for (one photo, an album,
documents), collected by the bot until Done or words, applied by the worker as one comment whose
files join the request's and go to whoever the comment goes to."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core import commands as c
from core import limits
from core.callbacks import CardVerb, RequestCb
from core.domain import Action
from core.texts import t
from db.models import Request
from tests.support.follow_ups import run_follow_ups_inline
from tests.support.sandbox_api import SandboxAPI
from tests.unit import test_new_request_dialog as dialog_tests
from tests.unit.test_desk import ADMIN, RESIDENT, STAFF, STAFF2, Desk, _sandbox_files, make_desk
from tests.unit.test_new_request_dialog import Chat, Recorder

RID = 7
# The /new dialog tests' harness: the real dispatcher, commands recorded, no flood limits.
harness = dialog_tests.harness
fast_sandbox = dialog_tests.fast_sandbox


async def _ask_comment(chat: Chat) -> None:
    await chat.say("/help")  # a message of the bot's to press a button on
    await chat.press(chat.last(), data=RequestCb(action=CardVerb.COMMENT, id=RID).pack())
    assert chat.last()["text"] == t("ask.comment", "en", id=RID)


def _comments(recorder: Recorder) -> list[c.AddComment]:
    return [s for s in recorder.sent if isinstance(s, c.AddComment)]


async def test_an_album_and_done_make_one_comment(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await _ask_comment(chat)
    first = await chat.photo(feed=False, media_group_id="alb", caption="Still dripping")
    second = await chat.photo(feed=False, media_group_id="alb")
    third = await chat.document(feed=False, media_group_id="alb", file_name="plan.pdf")
    before = len(chat.messages())
    await chat.feed()
    replies = chat.messages()[before:]
    assert [m["text"] for m in replies] == [t("ask.files_got", "en", id=RID)]  # one per album
    assert _comments(recorder) == []  # nothing until Done
    await chat.press(replies[0], t("btn.files_done", "en"))
    (comment,) = _comments(recorder)
    assert (comment.request_id, comment.text) == (RID, "Still dripping")
    assert [(a.kind, a.file_id) for a in comment.attachments] == [
        ("photo", first),
        ("photo", second),
        ("document", third),
    ]
    assert comment.attachments[2].file_name == "plan.pdf"
    assert await chat.state() is None
    # Done again (a double press): the files went already, nothing more is sent.
    await chat.press(replies[0], t("btn.files_done", "en"))
    assert len(_comments(recorder)) == 1


async def test_words_after_files_finish_the_comment(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await _ask_comment(chat)
    photo = await chat.photo()
    await chat.say("This is the crack")
    (comment,) = _comments(recorder)
    assert comment.text == "This is the crack"
    assert [a.file_id for a in comment.attachments] == [photo]


async def test_a_done_of_another_request_is_stale(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await _ask_comment(chat)
    await chat.photo()
    other = RequestCb(action=CardVerb.FILES_DONE, id=RID + 1).pack()
    assert await chat.press(chat.last(), data=other) == t("stale", "en")
    assert _comments(recorder) == []


async def test_files_over_the_limit_are_refused_once(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await _ask_comment(chat)
    for _ in range(limits.MAX_ATTACHMENTS + 2):
        await chat.photo(feed=False, media_group_id="big")
    before = len(chat.messages())
    await chat.feed()
    replies = [m["text"] for m in chat.messages()[before:]]
    too_many = t("new.error.too_many_files", "en", max=limits.MAX_ATTACHMENTS)
    assert replies == [t("ask.files_got", "en", id=RID), too_many]
    await chat.press(chat.messages()[before], t("btn.files_done", "en"))
    (comment,) = _comments(recorder)
    assert len(comment.attachments) == limits.MAX_ATTACHMENTS and comment.text == ""


# --- The worker's side ------------------------------------------------------------------------


@pytest.fixture
def desk(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> Desk:
    run_follow_ups_inline(monkeypatch)
    return make_desk(db, sandbox, monkeypatch)


def _photos(desk: Desk, count: int) -> list[c.AttachmentIn]:
    return [c.AttachmentIn(kind="photo", file_id=f) for f in _sandbox_files(desk, count)]


def test_staff_files_reach_the_author_and_join_the_request(desk: Desk) -> None:
    rid = desk.create(attachments=_photos(desk, 1))
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.ACCEPT)
    photos = _photos(desk, 2)
    seen = len(desk.sandbox.messages(RESIDENT))
    desk.run(c.AddComment, STAFF, request_id=rid, text="", attachments=photos)
    assert desk.texts(STAFF)[-1] == t("done.files", "en", id=rid, count=2).replace(
        "<b>", ""
    ).replace("</b>", "")
    notice, *album = desk.sandbox.messages(RESIDENT)[seen:]
    assert t("notify.files", "en", count=2) in notice["text"]
    assert [m["media_group_id"] is not None for m in album] == [True, True]  # one album
    with Session(desk.engine) as s:
        request = s.get(Request, rid)
        assert request is not None and len(request.attachments) == 3
    # The card counts them, and its comment shows the files' mark for want of words.
    desk.run(c.ShowRequest, RESIDENT, request_id=rid)
    card = desk.texts(RESIDENT)[-1]
    assert t("card.attachments", "en", count=3) in card and "📎" in card


def test_the_authors_files_reach_the_assignee_only(desk: Desk) -> None:
    rid = desk.create()
    desk.run(c.TransitionRequest, STAFF, request_id=rid, action=Action.ACCEPT)
    seen = {u: len(desk.sandbox.messages(u)) for u in (STAFF, STAFF2, ADMIN)}
    desk.run(c.AddComment, RESIDENT, request_id=rid, text="Look", attachments=_photos(desk, 1))
    new = {u: desk.sandbox.messages(u)[seen[u] :] for u in seen}
    assert [bool(new[u]) for u in (STAFF, STAFF2, ADMIN)] == [True, False, False]
    notice, photo = new[STAFF]
    assert "Look" in notice["text"] and photo["photo"]


def test_a_request_holds_a_bounded_number_of_files(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "REQUEST_FILES_MAX", 3)
    rid = desk.create(attachments=_photos(desk, 2))
    desk.run(c.AddComment, RESIDENT, request_id=rid, text="more", attachments=_photos(desk, 2))
    assert desk.texts(RESIDENT)[-1] == t("refused.files", "en", id=rid, max=3, room=1)
    with Session(desk.engine) as s:
        request = s.get(Request, rid)
        assert request is not None and len(request.attachments) == 2


def test_a_comment_says_something() -> None:
    actor = c.Actor(user_id=1, chat_id=1)
    with pytest.raises(ValueError, match="words or files"):
        c.AddComment(idempotency_key="k", actor=actor, request_id=1, text=" \u200b ")
