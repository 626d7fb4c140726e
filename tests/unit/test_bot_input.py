"""Hostile input at the bot: control characters, invisible-only text, garbage ids, group chats.

The pure functions and the command models are tested directly; the bot through the real
dispatcher against the sandbox, with a recording CommandQueue (no broker, no worker).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from bot.app import create_bot, create_dispatcher
from core import commands as c
from core import limits
from core.callbacks import BroadcastCb, ListCb, ListKind, RequestCb
from core.domain import Action
from core.settings import get_settings
from core.texts import t
from core.user_input import (
    DB_ID_LIMIT,
    TELEGRAM_ID_LIMIT,
    clean_text,
    normalize,
    parse_id,
    parse_user_target,
)
from tests.support.sandbox_api import SandboxAPI
from tests.unit.test_new_request_dialog import USER, Chat, Recorder, close_bot

GROUP = -100_777
INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200c\u200d",  # ZWNJ, ZWJ
    "\u2060",  # word joiner
    "\ufeff",  # BOM
    "\u200e\u200f",  # direction marks
    "\u202a\u202b\u202c\u202d\u202e",  # embeddings and overrides
    "\u2066\u2067\u2068\u2069",  # isolates
    "\u00ad",  # soft hyphen (Cf)
    "\u3164",  # Hangul filler
    "\ufe0f",  # a variation selector alone
    " \u00a0\u3000\u200b\n\t ",  # whitespace mixed in
]

# --- The normalisation itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Tap\x00 leaks", "Tap leaks"),
        ("\x1b[31mred\x1b[0m", "[31mred[0m"),  # no terminal escapes in logs
        ("C1\x85\x9b controls\x7f", "C1 controls"),
        ("lone \ud800surrogate", "lone surrogate"),
        ("line\r\nbreaks\rkept\n\ttab", "line\nbreaks\nkept\n\ttab"),
        ("family 👨\u200d👩\u200d👧 and كتاب\u200c", "family 👨\u200d👩\u200d👧 and كتاب\u200c"),
    ],
)
def test_clean_text_drops_controls_and_surrogates_only(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean
    clean.encode()  # storable as UTF-8


@pytest.mark.parametrize("text", INVISIBLE)
def test_text_of_only_invisible_characters_is_empty(text: str) -> None:
    assert normalize(text) == ""
    assert "ok" in normalize(f"{text}ok{text}")


def test_normalize_keeps_visible_text_and_strips_it() -> None:
    assert normalize("  Flat 5\x00  ") == "Flat 5"
    assert normalize("\u200bFlat") == "\u200bFlat"  # something visible: kept as typed


@pytest.mark.parametrize(
    "text", ["", "²", "٣", "１２", "0", "-5", "+5", " 5", "5 ", "1e3", "9" * 5000, "12a"]
)
def test_parse_id_takes_only_ascii_digits(text: str) -> None:
    assert parse_id(text, DB_ID_LIMIT) is None


def test_parse_id_bounds() -> None:
    assert parse_id("42", TELEGRAM_ID_LIMIT) == 42
    assert parse_id("007", TELEGRAM_ID_LIMIT) == 7
    assert parse_id(str(TELEGRAM_ID_LIMIT - 1), TELEGRAM_ID_LIMIT) == TELEGRAM_ID_LIMIT - 1
    assert parse_id(str(TELEGRAM_ID_LIMIT), TELEGRAM_ID_LIMIT) is None
    assert parse_id("99999999999999999999999", DB_ID_LIMIT) is None


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("123", "123"),
        ("@Some_User", "@Some_User"),
        ("some_user", "some_user"),
        ("²", None),
        ("0", None),
        ("-5", None),
        ("99999999999999999999999", None),
        ("@ab", None),  # too short for a username
        ("@user\u200b", None),
        ("@юзер", None),
        ("@" + "a" * 33, None),
    ],
)
def test_parse_user_target(text: str, target: str | None) -> None:
    assert parse_user_target(text) == target


# --- The command models: clean whatever sent them --------------------------------------------

ACTOR = c.Actor(user_id=1, chat_id=1)
BASE: dict[str, Any] = {"idempotency_key": "tg-update:1", "actor": ACTOR}


def test_commands_drop_control_characters() -> None:
    command = c.CreateRequest(
        **BASE, title="Tap\x00 leaks", description="Since\x1b Monday", location="Flat\x85 5"
    )
    assert (command.title, command.description, command.location) == (
        "Tap leaks",
        "Since Monday",
        "Flat 5",
    )
    assert c.AddComment(**BASE, request_id=1, text="ok\x00").text == "ok"
    assert c.StartBroadcast(**BASE, audience="staff", text="hi\x07").text == "hi"
    assert c.ShowQueue(**BASE, location="roof\x00").location == "roof"
    attachment = c.AttachmentIn(kind="document", file_id="f", file_name="a\x00.pdf")
    assert attachment.file_name == "a.pdf"
    actor = c.Actor(user_id=1, chat_id=1, first_name="A\x00nn", last_name="\x1bB")
    assert (actor.first_name, actor.last_name) == ("Ann", "B")
    assert c.CreateRequest.model_validate(command.to_kwargs()["command"]) == command


@pytest.mark.parametrize("blank", ["\u200b\u200e", "\x00\x01", " \ufeff "])
def test_invisible_required_text_is_refused_by_the_models(blank: str) -> None:
    fields = {"title": "t", "description": "d", "location": "l"}
    for name in fields:
        with pytest.raises(ValidationError):
            c.CreateRequest(**BASE, **{**fields, name: blank})
    with pytest.raises(ValidationError):
        c.AddComment(**BASE, request_id=1, text=blank)
    with pytest.raises(ValidationError):
        c.StartBroadcast(**BASE, audience="staff", text=blank)


def test_invisible_optional_text_is_none() -> None:
    # A blank reject reason is no reason: the worker then refuses with reason_required.
    reject = c.TransitionRequest(**BASE, request_id=1, action=Action.REJECT, note="\u200b ")
    assert reject.note is None
    assert c.ShowQueue(**BASE, location="\u2066\u2069").location is None


@pytest.mark.parametrize("bad", [0, -5, DB_ID_LIMIT, 10**30])
def test_request_ids_out_of_range_are_refused(bad: int) -> None:
    with pytest.raises(ValidationError):
        c.ShowRequest(**BASE, request_id=bad)
    with pytest.raises(ValidationError):
        c.ConfirmBroadcast(**BASE, broadcast_id=bad)


@pytest.mark.parametrize("bad", [0, -1, TELEGRAM_ID_LIMIT])
def test_telegram_ids_out_of_range_are_refused(bad: int) -> None:
    with pytest.raises(ValidationError):
        c.TransitionRequest(**BASE, request_id=1, action=Action.ASSIGN, assignee=bad)
    with pytest.raises(ValidationError):
        c.Actor(user_id=bad, chat_id=1)


@pytest.mark.parametrize("bad", ["²", "99999999999999999999999", "-5", "@ab", "a b"])
def test_set_role_refuses_garbage_targets(bad: str) -> None:
    with pytest.raises(ValidationError):
        c.SetRole(**BASE, target=bad)


def test_pages_are_bounded() -> None:
    with pytest.raises(ValidationError):
        c.ShowMyRequests(**BASE, page=-1)
    with pytest.raises(ValidationError):
        c.ShowQueue(**BASE, page=10**12)


@pytest.mark.parametrize(
    ("cb", "data"),
    [
        (RequestCb, "rq:accept:-5:"),
        (RequestCb, "rq:accept:0:"),
        (RequestCb, "rq:accept:999999999999999999999999:"),
        (ListCb, "ls:my:-1::"),
        (ListCb, "ls:queue:999999999999::"),
        (ListCb, f"ls:my:1:::::{DB_ID_LIMIT}"),
        (ListCb, f"ls:my:1:::::-{DB_ID_LIMIT}"),
        (ListCb, "ls:my:1:::::²"),
        (BroadcastCb, "bc:confirm:-1:"),
        (BroadcastCb, f"bc:confirm:{DB_ID_LIMIT}:"),
    ],
)
def test_forged_callback_ids_fail_to_unpack(cb: type[RequestCb], data: str) -> None:
    with pytest.raises(ValueError):
        cb.unpack(data)


# --- Through the bot ---------------------------------------------------------------------------


@pytest.fixture
async def harness(sandbox: SandboxAPI) -> AsyncIterator[tuple[Chat, Recorder]]:
    sandbox.configure(flood_limits=False)
    settings = get_settings()
    bot = create_bot(settings)
    recorder = Recorder()
    dp = create_dispatcher(settings, recorder)
    try:
        yield Chat(sandbox, bot, dp), recorder
    finally:
        await close_bot(bot)
        recorder.close()


async def test_control_characters_never_reach_a_command(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await chat.say("/queue Flat\x00 5\x1b")
    await chat.say(f"/queue {INVISIBLE[-1]}")
    await chat.press({"message_id": 1}, data="rq:comment:5:")
    await chat.say("Fixed\x00 it\x7f")
    await chat.say("/broadcast")  # the worker asks an admin for the audience
    await chat.press({"message_id": 1}, data=BroadcastCb(action="aud", arg="staff").pack())
    await chat.say("Water\x00 off\x85 at 10")
    queue, blank_queue, comment, begin, broadcast = recorder.sent
    assert isinstance(begin, c.BeginBroadcast)
    assert isinstance(queue, c.ShowQueue) and queue.location == "Flat 5"
    assert isinstance(blank_queue, c.ShowQueue) and blank_queue.location is None
    assert isinstance(comment, c.AddComment) and comment.text == "Fixed it"
    assert isinstance(broadcast, c.StartBroadcast) and broadcast.text == "Water off at 10"


@pytest.mark.parametrize(
    ("button", "prompt", "limit"),
    [
        ("reject", "ask.reason", limits.REASON_MAX),
        ("comment", "ask.comment", limits.COMMENT_MAX),
        ("done", "ask.done", limits.REASON_MAX),
    ],
)
@pytest.mark.parametrize("blank", ["\u200b\u200b", "\u202e\u2066 \ufeff", "\x00\x07"])
async def test_invisible_reason_comment_or_note_is_asked_again(
    harness: tuple[Chat, Recorder], button: str, prompt: str, limit: int, blank: str
) -> None:
    chat, recorder = harness
    await chat.press({"message_id": 1}, data=f"rq:{button}:5:")
    assert chat.last()["source"] == t(prompt, id=5)
    await chat.say(blank)
    assert chat.last()["source"] == t("ask.text_expected", max=limit)
    assert recorder.sent == []
    await chat.say("Out of\x00 parts")
    [command] = recorder.sent
    if isinstance(command, c.AddComment):
        assert command.text == "Out of parts"
    else:
        assert isinstance(command, c.TransitionRequest) and command.note == "Out of parts"


async def test_invisible_broadcast_text_is_asked_again(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await chat.say("/broadcast")
    await chat.press({"message_id": 1}, data=BroadcastCb(action="aud", arg="everyone").pack())
    await chat.say("\u200b\u2060")
    assert chat.last()["source"] == t("ask.text_expected", max=limits.BROADCAST_MAX)
    assert [type(sent) for sent in recorder.sent] == [c.BeginBroadcast]


async def test_a_closing_note_over_the_note_limit_is_refused_not_crashed(
    harness: tuple[Chat, Recorder],
) -> None:
    """The closing note is the transition's note (REASON_MAX), not a comment (COMMENT_MAX)."""
    chat, recorder = harness
    await chat.press({"message_id": 1}, data="rq:done:5:")
    await chat.say("n" * (limits.REASON_MAX + 1))
    assert chat.last()["source"] == t(
        "ask.too_long", length=limits.REASON_MAX + 1, max=limits.REASON_MAX
    )
    assert recorder.sent == []


@pytest.mark.parametrize(
    "args",
    [
        "² staff",
        "99999999999999999999999 staff",
        f"{'9' * 5000} admin",
        "0 staff",
        "-5 staff",
        "@ab staff",
        "\u200b123 staff",
    ],
)
async def test_grant_with_a_garbage_id_is_refused(
    harness: tuple[Chat, Recorder], args: str
) -> None:
    chat, recorder = harness
    await chat.say(f"/grant {args}")
    target = args.split()[0]
    assert chat.last()["source"] == t("input.bad_user", target=target[:64])
    assert recorder.sent == []


async def test_grant_and_revoke_with_good_targets(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await chat.say("/grant 123\x00 staff")
    await chat.say("/revoke @Some_User")
    await chat.say("/revoke ²")
    assert chat.last()["source"] == t("input.bad_user", target="²")
    grant, revoke = recorder.sent
    assert isinstance(grant, c.SetRole) and (grant.target, grant.role) == ("123", "staff")
    assert isinstance(revoke, c.SetRole) and (revoke.target, revoke.role) == ("@Some_User", None)


FORGED = [
    "rq:accept:-5:",
    "rq:accept:0:",
    "rq:accept:999999999999999999999999:",
    "rq:open:abc:",
    "rq:assignto:5:²",
    "rq:assignto:5:-3",
    "rq:assignto:5:0",
    f"rq:assignto:5:{TELEGRAM_ID_LIMIT}",
    "ls:my:-1::",
    "ls:queue:99999999999::",
    "ls:my:²::",
    "ls:queue:0:::bogus:",
    "ls:queue:0::::x",
    f"ls:my:1:::::{DB_ID_LIMIT}",
    "ls:mine:1:::::1.5",
    "ls:staff:1::::::",
    "bc:confirm:-1:",
    "bc:cancel:999999999999999999999999:",
    "zz:whatever",
]


@pytest.mark.parametrize("data", FORGED)
async def test_forged_callback_ids_are_refused_with_an_answer(
    harness: tuple[Chat, Recorder], data: str, caplog: pytest.LogCaptureFixture
) -> None:
    chat, recorder = harness
    # Chat.press asserts exactly one answerCallbackQuery: an exception would leave none.
    assert await chat.press({"message_id": 1}, data=data) == t("stale")
    assert recorder.sent == []
    assert chat.messages() == []  # no "something went wrong" apology
    assert "update.failed" not in caplog.text


async def test_valid_callback_ids_still_work(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await chat.press({"message_id": 1}, data="rq:accept:7:")
    await chat.press({"message_id": 1}, data=f"rq:assignto:7:{TELEGRAM_ID_LIMIT - 1}")
    await chat.press({"message_id": 1}, data="ls:my:3::")
    accept, assign, page = recorder.sent
    assert isinstance(accept, c.TransitionRequest) and accept.request_id == 7
    assert isinstance(assign, c.TransitionRequest) and assign.assignee == TELEGRAM_ID_LIMIT - 1
    assert isinstance(page, c.ShowMyRequests) and (page.page, page.edge) == (3, None)


@pytest.mark.parametrize(
    ("kind", "command"),
    [
        (ListKind.MY, c.ShowMyRequests),
        (ListKind.MINE, c.ShowMine),
        (ListKind.QUEUE, c.ShowQueue),
        (ListKind.FIND, c.FindRequests),
        (ListKind.STAFF, c.ListStaff),
    ],
)
@pytest.mark.parametrize("edge", [41, -41])
async def test_page_buttons_carry_their_boundary_row_to_the_command(
    harness: tuple[Chat, Recorder], kind: ListKind, command: type[c.Command], edge: int
) -> None:
    chat, recorder = harness
    loc = "light" if kind is ListKind.FIND else ""
    await chat.press({"message_id": 1}, data=ListCb(kind=kind, page=2, loc=loc, edge=edge).pack())
    [sent] = recorder.sent
    assert isinstance(sent, command)
    assert sent.model_dump(include={"page", "edge"}) == {"page": 2, "edge": edge}


async def test_queue_filter_buttons_become_the_command_old_ones_included(
    harness: tuple[Chat, Recorder],
) -> None:
    chat, recorder = harness
    await chat.press({"message_id": 1}, data="ls:queue:2:new:Yard:urgent:o")
    await chat.press({"message_id": 1}, data="ls:queue:1:accepted:")  # drawn before the filters
    new, old = recorder.sent
    assert isinstance(new, c.ShowQueue) and isinstance(old, c.ShowQueue)
    assert (new.page, new.status, new.location, new.priority, new.only) == (
        2,
        "new",
        "Yard",
        "urgent",
        "o",
    )
    assert (old.page, old.status, old.priority, old.only) == (1, "accepted", None, None)


# --- Group chats --------------------------------------------------------------------------------


def group_messages(chat: Chat) -> list[dict[str, Any]]:
    return chat.sandbox.messages(GROUP)


async def pointer(chat: Chat, language: str | None = None) -> str:
    me = await chat.bot.me()
    return t("group.private_only", language, bot=me.username)


@pytest.mark.parametrize("chat_type", ["group", "supergroup"])
@pytest.mark.parametrize(
    "text",
    [
        "/queue",
        "/queue Flat 5",
        "/my",
        "/staff",
        "/new",
        "/broadcast",
        "/grant 123 staff",
        "/revoke 123",
        "/start",
        "/help",
        "/cancel",
        "/whatever",
        "📋 My requests",
        "🗂 Queue",
        "📝 New request",
    ],
)
async def test_group_commands_get_a_pointer_to_the_private_chat(
    harness: tuple[Chat, Recorder], chat_type: str, text: str
) -> None:
    chat, recorder = harness
    chat.sandbox._call("POST", "/sandbox/chats", {"id": GROUP, "type": chat_type})
    chat.profile["chat_id"] = GROUP
    await chat.say(text)
    [reply] = group_messages(chat)
    assert reply["source"] == await pointer(chat)
    assert reply["reply_to_message_id"] is not None  # a reply: the group sees to whom
    assert recorder.sent == []
    assert await chat.dp.storage.get_state(chat.key()) is None
    assert chat.messages() == []  # nothing in the private chat either


async def test_group_pointer_speaks_the_users_language(harness: tuple[Chat, Recorder]) -> None:
    chat, _ = harness
    chat.profile.update(chat_id=GROUP, language_code="ru")
    await chat.say("/my")
    assert group_messages(chat)[-1]["source"] == await pointer(chat, "ru")
    assert "@sandbox_" in group_messages(chat)[-1]["text"]


async def test_group_chatter_and_other_bots_commands_are_left_alone(
    harness: tuple[Chat, Recorder],
) -> None:
    chat, recorder = harness
    chat.profile["chat_id"] = GROUP
    me = await chat.bot.me()
    await chat.say("the lift is broken again")
    await chat.say("/queue@some_other_bot")
    assert group_messages(chat) == []
    await chat.say(f"/queue@{me.username}")
    assert [m["source"] for m in group_messages(chat)] == [await pointer(chat)]
    assert recorder.sent == []


async def test_group_button_press_gets_the_pointer_as_an_alert(
    harness: tuple[Chat, Recorder],
) -> None:
    chat, recorder = harness
    result = chat.sandbox._call(
        "POST",
        "/sandbox/callbacks",
        {"user_id": USER, "chat_id": GROUP, "message_id": 1, "data": "rq:accept:7:"},
    )
    await chat.feed()
    [answer] = chat.sandbox._call(
        "GET", f"/sandbox/callback_answers?query_id={result['callback_query_id']}"
    )
    assert answer["text"] == await pointer(chat)
    assert answer["show_alert"] is True
    assert recorder.sent == []


async def test_private_chat_is_unaffected(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await chat.say("/my")
    await chat.say("/queue")
    assert [type(command) for command in recorder.sent] == [c.ShowMyRequests, c.ShowQueue]
