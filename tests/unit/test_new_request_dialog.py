"""The /new dialog, driven through the real dispatcher against the sandbox Bot API server.

Commands go to a recording CommandQueue: no broker, no worker.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import Update

from bot.app import create_bot, create_dispatcher
from bot.dialogs.memory import forget_user, recent_key, recent_locations, remember_location
from bot.enqueue import CommandQueue
from bot.routers import new_request
from bot.routers.new_request import Act, DraftCb, NewRequest
from core import limits
from core.commands import Command, CreateRequest, RegisterUser
from core.domain import Priority
from core.settings import get_settings
from core.texts import t
from tests.support.sandbox_api import SandboxAPI

MB = 1024 * 1024
USER = 4242


class Recorder(CommandQueue):
    """A CommandQueue that only records what the bot would enqueue."""

    def __init__(self) -> None:
        super().__init__("memory://")
        self.sent: list[Command] = []

    async def send(self, command: Command) -> None:
        self.sent.append(command)

    def created(self) -> list[CreateRequest]:
        return [c for c in self.sent if isinstance(c, CreateRequest)]


_synthetic_ids = itertools.count(10**9)


async def close_bot(bot: Bot) -> None:
    """Close the HTTP session without aiogram's 0.25 s grace sleep (plain HTTP, no SSL)."""
    session = bot.session._session  # type: ignore[attr-defined]
    if session is not None:
        await session.close()


class Chat:
    """One user talking to the bot: send something, feed the updates, read the replies."""

    def __init__(
        self, sandbox: SandboxAPI, bot: Bot, dp: Dispatcher, user_id: int = USER, **profile: Any
    ) -> None:
        self.sandbox, self.bot, self.dp, self.user_id = sandbox, bot, dp, user_id
        self.profile = {"first_name": "Ann", **profile}

    async def feed(self) -> list[int]:
        updates = await self.bot.get_updates(timeout=0)
        for update in updates:
            await self.dp.feed_update(self.bot, update)
        await new_request.drain_album_replies()
        if updates:
            await self.bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
        return [u.update_id for u in updates]

    async def say(self, text: str) -> None:
        self.sandbox.send_text(self.user_id, text, **self.profile)
        await self.feed()

    async def photo(self, feed: bool = True, **fields: Any) -> str:
        """A photo; returns the file_id of its largest size."""
        result = self.sandbox._call(
            "POST", "/sandbox/photos", {"user_id": self.user_id, **self.profile, **fields}
        )
        if feed:
            await self.feed()
        return str(result["file_id"])

    async def document(self, feed: bool = True, **fields: Any) -> str:
        body = {"user_id": self.user_id, **self.profile, "file_name": "a.pdf", **fields}
        result = self.sandbox._call("POST", "/sandbox/documents", body)
        if feed:
            await self.feed()
        return str(result["file_id"])

    async def unsupported(self, kind: str) -> None:
        """A sticker or a voice message (the sandbox has no endpoint for them)."""
        content: dict[str, Any] = {
            "sticker": {
                "sticker": {
                    "file_id": "CAACsticker",
                    "file_unique_id": "st1",
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                }
            },
            "voice": {"voice": {"file_id": "AwACvoice", "file_unique_id": "vo1", "duration": 2}},
        }[kind]
        update_id = next(_synthetic_ids)
        update = Update.model_validate(
            {
                "update_id": update_id,
                "message": {
                    "message_id": update_id,
                    "date": 0,
                    "chat": {"id": self.user_id, "type": "private"},
                    "from": {"id": self.user_id, "is_bot": False, **self.profile},
                    **content,
                },
            }
        )
        await self.dp.feed_update(self.bot, update)

    async def press(self, message: dict[str, Any], text: str | None = None, data: str = "") -> str:
        """Press the button `text` of `message` (or send raw `data`); returns the answer text."""
        if text is not None:
            data = button_data(message, text)
        result = self.sandbox.press(self.user_id, message["message_id"], data)
        await self.feed()
        answers = self.sandbox._call(
            "GET", f"/sandbox/callback_answers?query_id={result['callback_query_id']}"
        )
        assert len(answers) == 1, "every press gets exactly one answer"
        return str(answers[0]["text"] or "")

    def messages(self) -> list[dict[str, Any]]:
        return self.sandbox.messages(self.user_id)

    def last(self) -> dict[str, Any]:
        return self.messages()[-1]

    def key(self) -> StorageKey:
        return StorageKey(bot_id=self.bot.id, chat_id=self.user_id, user_id=self.user_id)

    async def state(self) -> str | None:
        return await self.dp.storage.get_state(self.key())

    async def data(self) -> dict[str, Any]:
        return await self.dp.storage.get_data(self.key())


def buttons(message: dict[str, Any]) -> dict[str, str]:
    markup = message["reply_markup"] or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row}


def button_data(message: dict[str, Any], text: str) -> str:
    found = buttons(message)
    assert text in found, f"no button {text!r} in {found}"
    return found[text]


@pytest.fixture(autouse=True)
def fast_sandbox(sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests answer faster than a person: no flood control, albums settle in 20 ms.
    sandbox.configure(flood_limits=False)
    monkeypatch.setattr(new_request, "ALBUM_REPLY_DELAY_S", 0.02)


@pytest.fixture
async def harness(
    sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Chat, Recorder]]:
    # Pacing is the limiter's business (test_bot_pacing.py), not the dialog's: a test answers
    # faster than a chat's 1/s, and a courtesy reply ("I did not understand") would be skipped.
    monkeypatch.setenv("RATE_PRIVATE_BURST", "1000")
    get_settings.cache_clear()
    settings = get_settings()
    bot = create_bot(settings)
    recorder = Recorder()
    dp = create_dispatcher(settings, recorder)
    try:
        yield Chat(sandbox, bot, dp), recorder
    finally:
        await close_bot(bot)
        recorder.close()


# --- Walking the dialog ------------------------------------------------------------------------

STEPS = ["title", "description", "location", "priority", "attachments", "confirm"]


async def reach(chat: Chat, step: str, *, location: str = "Flat 12") -> None:
    """Answer the steps before `step` with valid input."""
    await chat.say("/new")
    answers: list[Callable[[], Awaitable[Any]]] = [
        lambda: chat.say("Leaking tap"),
        lambda: chat.say("Kitchen tap drips all night"),
        lambda: chat.say(location),
        lambda: chat.press(chat.last(), t("new.priority.high")),
        lambda: chat.press(chat.last(), t("new.button.skip")),
    ]
    for answer in answers[: STEPS.index(step)]:
        await answer()
    assert await chat.state() == getattr(NewRequest, step).state


async def complete(chat: Chat, location: str) -> None:
    await reach(chat, "confirm", location=location)
    await chat.press(chat.last(), t("new.button.submit"))
    assert await chat.state() is None


def question(step: str, lang: str | None = None, **summary: Any) -> str:
    """The question's HTML as the bot sends it (the summary needs its values)."""
    return {
        "title": lambda: t("new.ask_title", lang, max=limits.TITLE_MAX),
        "description": lambda: t("new.ask_description", lang, max=limits.DESCRIPTION_MAX),
        "location": lambda: t("new.ask_location", lang, max=limits.LOCATION_MAX),
        "priority": lambda: t("new.ask_priority", lang),
        "attachments": lambda: t(
            "new.ask_attachments", lang, max=limits.MAX_ATTACHMENTS, max_mb=20
        ),
        "confirm": lambda: t("new.summary", lang, **summary),
    }[step]()


# --- The happy path ---------------------------------------------------------------------------


async def test_happy_path_with_an_album_sends_one_create_request(
    harness: tuple[Chat, Recorder],
) -> None:
    chat, recorder = harness
    await chat.say("/new")
    assert chat.last()["source"] == question("title")
    await chat.say("  Tap <b>leaks</b> & drips  ")
    assert chat.last()["source"] == question("description")
    await chat.say("Since Monday")
    assert chat.last()["source"] == question("location")
    assert chat.last()["reply_markup"] is None  # no recent locations yet
    await chat.say("Flat 12, kitchen")
    priority_question = chat.last()
    assert priority_question["source"] == question("priority")
    assert list(buttons(priority_question)) == [t(f"new.priority.{p}") for p in Priority]
    answer = await chat.press(priority_question, t("new.priority.high"))
    assert answer == t("new.priority_chosen", priority=t("new.priority.high"))
    assert chat.last()["source"] == question("attachments")
    assert list(buttons(chat.last())) == [t("new.button.skip")]

    # The album's items arrive together, as from Telegram: one reply for the whole album.
    before = len(chat.messages())
    first = await chat.photo(feed=False, media_group_id="album-1", file_size=150_000)
    second = await chat.photo(feed=False, media_group_id="album-1", file_size=250_000)
    assert len(await chat.feed()) == 2
    [reply] = chat.messages()[before:]
    assert reply["source"] == t("new.attached", count=2, max=10)
    assert list(buttons(reply)) == [t("new.button.continue")]
    await chat.press(chat.last(), t("new.button.continue"))

    summary = chat.last()
    assert summary["source"] == question(
        "confirm",
        title="Tap <b>leaks</b> & drips",
        description="Since Monday",
        location="Flat 12, kitchen",
        priority=t("new.priority.high"),
        count=2,
    )
    assert "Tap &lt;b&gt;leaks&lt;/b&gt; &amp; drips" in summary["source"]  # escaped
    assert "Title: Tap <b>leaks</b> & drips" in summary["text"]  # shown as typed
    assert recorder.sent == []

    result = chat.sandbox.press(USER, summary["message_id"], button_data(summary, "✅ Submit"))
    await chat.feed()

    [command] = recorder.sent
    assert isinstance(command, CreateRequest)
    assert command.idempotency_key == f"tg-update:{result['update_id']}"
    assert (command.actor.user_id, command.actor.chat_id) == (USER, USER)
    assert command.actor.first_name == "Ann"
    assert command.title == "Tap <b>leaks</b> & drips"
    assert command.description == "Since Monday"
    assert command.location == "Flat 12, kitchen"
    assert command.priority is Priority.HIGH
    assert [(a.kind, a.file_id, a.size) for a in command.attachments] == [
        ("photo", first, 150_000),
        ("photo", second, 250_000),
    ]
    assert all(a.file_unique_id for a in command.attachments)
    # Validated again exactly as the worker will receive it.
    assert CreateRequest.model_validate(command.to_kwargs()["command"]) == command

    edited = next(m for m in chat.messages() if m["message_id"] == summary["message_id"])
    assert edited["reply_markup"] is None  # can't be pressed again
    assert edited["source"].endswith(t("new.sending"))
    assert await chat.state() is None
    assert await chat.data() == {}


async def test_control_characters_are_dropped_from_the_draft(
    harness: tuple[Chat, Recorder],
) -> None:
    """A NUL in a title made PostgreSQL refuse the request in the worker: it never gets there."""
    chat, recorder = harness
    await chat.say("/new")
    await chat.say("Tap\x00 leaks\x1b")
    await chat.say("Drips\r\nall night\x85")
    await chat.say("\u200bFlat\x07 12")
    assert (await chat.data())["title"] == "Tap leaks"
    await chat.press(chat.last(), t("new.priority.normal"))
    await chat.document(file_name="act\x00.pdf", mime_type="application/pdf")
    await chat.press(chat.last(), t("new.button.continue"))
    await chat.press(chat.last(), t("new.button.submit"))
    [command] = recorder.created()
    assert (command.title, command.description, command.location) == (
        "Tap leaks",
        "Drips\nall night",
        "\u200bFlat 12",  # something visible: kept as typed
    )
    assert command.attachments[0].file_name == "act.pdf"


async def test_the_length_limit_counts_what_is_kept(harness: tuple[Chat, Recorder]) -> None:
    chat, _ = harness
    await chat.say("/new")
    await chat.say("x" * limits.TITLE_MAX + "\x00" * 50)  # within the limit once cleaned
    assert await chat.state() == NewRequest.description.state
    assert (await chat.data())["title"] == "x" * limits.TITLE_MAX


async def test_documents_keep_name_type_and_size(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await reach(chat, "attachments")
    file_id = await chat.document(file_name="act.pdf", mime_type="application/pdf", file_size=99)
    await chat.press(chat.last(), t("new.button.continue"))
    await chat.press(chat.last(), t("new.button.submit"))
    [command] = recorder.created()
    [attachment] = command.attachments
    assert attachment.model_dump(exclude={"file_unique_id"}) == {
        "kind": "document",
        "file_id": file_id,
        "file_name": "act.pdf",
        "mime_type": "application/pdf",
        "size": 99,
    }
    assert command.priority is Priority.HIGH and command.attachments == [attachment]


async def test_menu_button_starts_the_dialog_and_russian_texts(
    harness: tuple[Chat, Recorder],
) -> None:
    chat, _ = harness
    chat.profile["language_code"] = "ru"
    await chat.say(t("menu.new", "ru"))
    assert chat.last()["source"] == question("title", "ru")
    assert chat.last()["text"].startswith("Новая заявка")
    await chat.say("Течёт кран")
    assert chat.last()["source"] == question("description", "ru")
    await chat.say("   ")
    assert chat.last()["source"] == (
        f"{t('new.error.description_empty', 'ru')}\n\n{question('description', 'ru')}"
    )
    await chat.say("Капает всю ночь")
    await chat.say("Кв. 5")
    assert list(buttons(chat.last())) == ["Низкий", "Обычный", "Высокий", "Срочный"]
    await chat.press(chat.last(), "Срочный")
    assert chat.last()["source"] == t("new.ask_attachments", "ru", max=10, max_mb=20)
    await chat.say("/cancel")
    assert chat.last()["text"] == t("new.cancelled", "ru")


# --- Recent locations ---------------------------------------------------------------------------


async def test_recent_locations_are_offered_on_the_next_new(
    harness: tuple[Chat, Recorder],
) -> None:
    chat, recorder = harness
    await complete(chat, "Flat 12")
    await complete(chat, "Basement <storage>")
    await reach(chat, "location")
    offer = chat.last()
    assert offer["source"] == t("new.ask_location_recent", max=limits.LOCATION_MAX)
    assert list(buttons(offer)) == ["Basement <storage>", "Flat 12"]  # newest first
    assert all(len(data.encode()) <= limits.CALLBACK_DATA_MAX for data in buttons(offer).values())

    await chat.press(offer, "Flat 12")
    assert chat.last()["source"] == question("priority")
    assert buttons(next(m for m in chat.messages() if m["message_id"] == offer["message_id"])) == {}
    await chat.press(chat.last(), t("new.priority.low"))
    await chat.press(chat.last(), t("new.button.skip"))
    await chat.press(chat.last(), t("new.button.submit"))
    assert [c.location for c in recorder.created()] == ["Flat 12", "Basement <storage>", "Flat 12"]
    storage = chat.dp.storage
    key = recent_key(chat.bot.id, USER, USER)
    assert await recent_locations(storage, key) == ["Flat 12", "Basement <storage>"]


async def test_typed_location_is_used_even_when_recent_ones_are_offered(
    harness: tuple[Chat, Recorder],
) -> None:
    chat, recorder = harness
    await complete(chat, "Flat 12")
    await reach(chat, "location")
    offer = chat.last()
    await chat.say("Roof")
    # The old offer is stale now.
    assert await chat.press(offer, "Flat 12") == t("new.stale")
    await chat.press(chat.last(), t("new.priority.normal"))
    await chat.press(chat.last(), t("new.button.skip"))
    await chat.press(chat.last(), t("new.button.submit"))
    assert recorder.created()[-1].location == "Roof"


async def test_recent_list_is_deduplicated_and_capped() -> None:
    storage = MemoryStorage()
    key = recent_key(1, 2, 3)
    for place in ["a", "b", "c", "d", "e", "f", "B"]:
        await remember_location(storage, key, place)
    assert await recent_locations(storage, key) == ["B", "f", "e", "d", "c"]
    assert len(await recent_locations(storage, key)) == limits.RECENT_LOCATIONS


@pytest.mark.parametrize("with_destiny", [True, False])
async def test_forget_user_clears_the_dialog_and_recent_locations(with_destiny: bool) -> None:
    storage: BaseStorage = RedisStorage(
        redis=fakeredis.aioredis.FakeRedis(),
        key_builder=DefaultKeyBuilder(with_destiny=with_destiny),
    )
    key = StorageKey(bot_id=1, chat_id=2, user_id=2)
    await storage.set_state(key, NewRequest.description)
    await storage.set_data(key, {"title": "Flat 5 leaks"})
    await remember_location(storage, recent_key(1, 2, 2), "Flat 5")
    expected = ["Flat 5"] if with_destiny else []  # no destinies: recent ones are not kept
    assert await recent_locations(storage, recent_key(1, 2, 2)) == expected

    await forget_user(storage, bot_id=1, chat_id=2, user_id=2)
    assert await storage.get_state(key) is None
    assert await storage.get_data(key) == {}
    assert await recent_locations(storage, recent_key(1, 2, 2)) == []
    await storage.close()


# --- Bad input ----------------------------------------------------------------------------------

BadInput = Callable[[Chat], Awaitable[Any]]


def _text(value: str) -> BadInput:
    return lambda chat: chat.say(value)


def _photo(chat: Chat) -> Awaitable[str]:
    return chat.photo()


def _sticker(chat: Chat) -> Awaitable[None]:
    return chat.unsupported("sticker")


def _voice(chat: Chat) -> Awaitable[None]:
    return chat.unsupported("voice")


BAD_INPUTS: list[tuple[str, str, BadInput, dict[str, Any]]] = [
    ("title", "new.error.title_empty", _text("   "), {}),
    # Only invisible characters (zero-width, BOM, direction marks) or controls: empty too.
    ("title", "new.error.title_empty", _text("\u200b\u200b"), {}),
    ("title", "new.error.title_empty", _text("\ufeff\u200e\u200f"), {}),
    ("title", "new.error.title_empty", _text("\x00\x01\x1b"), {}),
    ("title", "new.error.title_too_long", _text("x" * 101), {"length": 101, "max": 100}),
    ("title", "new.error.text_expected", _photo, {}),
    ("title", "new.error.text_expected", _sticker, {}),
    ("title", "new.error.text_expected", _voice, {}),
    ("description", "new.error.description_empty", _text(" \n "), {}),
    ("description", "new.error.description_empty", _text("\u202e\u2066\u2069\u2060 \u200d"), {}),
    (
        "description",
        "new.error.description_too_long",
        _text("y" * 2001),
        {"length": 2001, "max": 2000},
    ),
    ("description", "new.error.text_expected", _photo, {}),
    ("location", "new.error.location_empty", _text("\t"), {}),
    ("location", "new.error.location_empty", _text("\u3164 \u200c"), {}),
    ("location", "new.error.location_too_long", _text("z" * 201), {"length": 201, "max": 200}),
    ("location", "new.error.text_expected", _voice, {}),
    ("priority", "new.error.priority_expected", _text("urgent!"), {}),
    ("priority", "new.error.priority_expected", _photo, {}),
    ("attachments", "new.error.files_expected", _text("see the photo"), {}),
    ("attachments", "new.error.files_expected", _sticker, {}),
    ("attachments", "new.error.files_expected", _voice, {}),
    ("confirm", "new.error.summary_expected", _text("yes"), {}),
]


@pytest.mark.parametrize(
    ("step", "error", "bad_input", "values"),
    BAD_INPUTS,
    ids=[
        f"{step}-{error.rsplit('.', 1)[-1]}-{i}" for i, (step, error, *_) in enumerate(BAD_INPUTS)
    ],
)
async def test_bad_input_is_explained_and_the_question_repeated(
    harness: tuple[Chat, Recorder],
    step: str,
    error: str,
    bad_input: BadInput,
    values: dict[str, Any],
) -> None:
    chat, recorder = harness
    await reach(chat, step)
    asked = chat.last()
    data_before = await chat.data()
    count_before = len(chat.messages())

    await bad_input(chat)

    replies = chat.messages()[count_before:]
    assert len(replies) == 1, replies
    reply = replies[0]
    assert reply["source"] == f"{t(error, **values)}\n\n{asked['source']}"
    assert reply["reply_markup"] == asked["reply_markup"]
    assert await chat.state() == getattr(NewRequest, step).state
    assert await chat.data() == data_before
    assert recorder.sent == []


async def test_an_eleventh_file_is_refused(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await reach(chat, "attachments")
    for n in range(9):
        await chat.document(file_name=f"scan{n}.pdf", media_group_id="docs")
    await chat.photo(media_group_id="pics")
    assert chat.last()["source"] == t("new.attached", count=10, max=10)
    await chat.photo(media_group_id="pics")  # the 11th
    assert chat.last()["source"] == (
        f"{t('new.error.too_many_files', max=10)}\n\n{t('new.attached', count=10, max=10)}"
    )
    assert list(buttons(chat.last())) == [t("new.button.continue")]
    assert len((await chat.data())["attachments"]) == 10
    await chat.press(chat.last(), t("new.button.continue"))
    await chat.press(chat.last(), t("new.button.submit"))
    [command] = recorder.created()
    assert [a.kind for a in command.attachments] == ["document"] * 9 + ["photo"]


async def test_an_album_over_the_limit_gets_one_reply_with_the_refusal(
    harness: tuple[Chat, Recorder],
) -> None:
    chat, _ = harness
    await reach(chat, "attachments")
    for n in range(8):
        await chat.document(file_name=f"scan{n}.pdf")
    before = len(chat.messages())
    for _ in range(4):  # two fit, two don't
        await chat.photo(feed=False, media_group_id="big-album")
    await chat.document(feed=False, media_group_id="big-album", file_size=30 * MB)
    await chat.feed()
    [reply] = chat.messages()[before:]
    assert reply["source"] == (
        f"{t('new.error.too_many_files', max=10)}\n\n{t('new.attached', count=10, max=10)}"
    )
    assert len((await chat.data())["attachments"]) == 10


async def test_a_file_over_20_mb_is_refused(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await reach(chat, "attachments")
    await chat.document(file_name="video.mov", file_size=21 * MB)
    assert chat.last()["source"] == (
        f"{t('new.error.file_too_big', size_mb='21.0', max_mb=20)}\n\n{question('attachments')}"
    )
    await chat.photo(file_size=20 * MB + 1)
    assert chat.last()["source"].startswith(t("new.error.file_too_big", size_mb="20.0", max_mb=20))
    assert (await chat.data())["attachments"] == []
    await chat.document(file_name="plan.pdf", file_size=20 * MB)  # exactly the limit: fine
    assert chat.last()["source"] == t("new.attached", count=1, max=10)
    await chat.press(chat.last(), t("new.button.continue"))
    await chat.press(chat.last(), t("new.button.submit"))
    [command] = recorder.created()
    assert [a.size for a in command.attachments] == [20 * MB]


# --- Cancel, commands mid-dialog, stale buttons -------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
async def test_cancel_works_at_every_step(harness: tuple[Chat, Recorder], step: str) -> None:
    chat, recorder = harness
    await reach(chat, step)
    asked = chat.last()
    await chat.say("/cancel")
    assert chat.last()["text"] == t("new.cancelled")
    assert await chat.state() is None
    if buttons(asked):  # the step's buttons are dead now
        assert await chat.press(asked, next(iter(buttons(asked)))) == t("new.stale")
    await chat.say("/cancel")
    assert chat.last()["text"] == t("new.nothing_to_cancel")
    assert recorder.sent == []


async def test_cancel_button_on_the_summary(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await reach(chat, "confirm")
    summary = chat.last()
    await chat.press(summary, t("new.button.cancel"))
    assert chat.last()["text"] == t("new.cancelled")
    assert not buttons(next(m for m in chat.messages() if m["message_id"] == summary["message_id"]))
    assert await chat.press(summary, t("new.button.submit")) == t("new.stale")
    assert await chat.state() is None
    assert recorder.sent == []


async def test_cancel_outside_a_dialog(harness: tuple[Chat, Recorder]) -> None:
    chat, _ = harness
    await chat.say("/cancel")
    assert [m["text"] for m in chat.messages()] == [t("new.nothing_to_cancel")]


async def test_submit_pressed_twice_sends_once(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await reach(chat, "confirm")
    summary = chat.last()
    submit = button_data(summary, t("new.button.submit"))
    assert await chat.press(summary, data=submit) == ""
    assert await chat.press(summary, data=submit) == t("new.stale")
    assert len(recorder.created()) == 1


async def test_forged_or_stale_presses_are_refused(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    # Outside any dialog: a well-formed priority press, and garbage with our prefix.
    forged = DraftCb(a=Act.PRIORITY, d="deadbeef", p=Priority.URGENT).pack()
    assert await chat.press({"message_id": 1}, data=forged) == t("new.stale")
    assert await chat.press({"message_id": 1}, data="np:zz:?") == t("new.stale")
    assert await chat.state() is None

    # In the priority step, a button of an older draft changes nothing.
    await reach(chat, "priority")
    assert await chat.press(chat.last(), data=forged) == t("new.stale")
    assert await chat.state() == NewRequest.priority.state
    assert "priority" not in await chat.data()
    # A button of the right draft but another step (a forged Submit) is refused too.
    draft = (await chat.data())["draft"]
    early_submit = DraftCb(a=Act.SUBMIT, d=draft).pack()
    assert await chat.press(chat.last(), data=early_submit) == t("new.stale")
    assert await chat.state() == NewRequest.priority.state

    # A new /new makes the previous draft's buttons stale.
    old_priority = chat.last()
    await chat.say("/new")
    await chat.say("Another title")
    assert await chat.press(old_priority, t("new.priority.high")) == t("new.stale")
    assert await chat.state() == NewRequest.description.state
    assert recorder.sent == []


def test_callback_data_is_short() -> None:
    longest = DraftCb(a=Act.PRIORITY, d="f" * 8, p=Priority.URGENT, i=limits.RECENT_LOCATIONS)
    assert len(longest.pack().encode()) <= 32 < limits.CALLBACK_DATA_MAX


async def test_start_and_help_mid_dialog_keep_the_draft(harness: tuple[Chat, Recorder]) -> None:
    chat, recorder = harness
    await reach(chat, "description")
    await chat.say("/help")
    assert chat.last()["text"].startswith("What I can do")
    await chat.say(t("menu.help"))
    assert chat.last()["text"].startswith("What I can do")
    await chat.say("/start")  # the worker would answer it
    assert [type(c) for c in recorder.sent] == [RegisterUser]
    await chat.say("/whatever")
    assert chat.last()["text"] == t("unknown")
    assert await chat.state() == NewRequest.description.state

    await chat.say("It drips")  # the draft goes on where it was
    assert chat.last()["source"] == question("location")
    assert (await chat.data())["description"] == "It drips"


async def test_new_mid_dialog_starts_a_fresh_draft(harness: tuple[Chat, Recorder]) -> None:
    chat, _ = harness
    await reach(chat, "location")
    await chat.say("/new")
    assert chat.last()["source"] == question("title")
    assert await chat.state() == NewRequest.title.state
    assert "title" not in await chat.data()


# --- A bot restart with Redis storage ------------------------------------------------------------


@pytest.mark.parametrize("with_destiny", [True, False], ids=["destiny-keys", "default-keys"])
async def test_dialog_survives_a_bot_restart_on_redis(
    sandbox: SandboxAPI, with_destiny: bool
) -> None:
    server = fakeredis.FakeServer()
    bot = create_bot(get_settings())
    recorder = Recorder()

    def start_bot() -> Dispatcher:
        storage = RedisStorage(
            redis=fakeredis.aioredis.FakeRedis(server=server),
            key_builder=DefaultKeyBuilder(with_destiny=with_destiny),
        )
        dp = Dispatcher(storage=storage, commands=recorder)
        dp.include_router(new_request.create_router())
        return dp

    try:
        chat = Chat(sandbox, bot, start_bot())
        await complete(chat, "Flat 3")
        await chat.say("/new")
        await chat.say("Broken lift")
        await chat.say("Stuck on floor 4")
        assert chat.last()["source"].startswith("Step 3")
        await chat.dp.storage.close()

        chat.dp = start_bot()  # a restart: new dispatcher, new Redis connection
        assert await chat.state() == NewRequest.location.state
        offer = chat.last()
        if with_destiny:
            await chat.press(offer, "Flat 3")
        else:  # this key builder can't keep recent locations: the dialog works without them
            assert buttons(offer) == {}
            await chat.say("Flat 3")
        await chat.press(chat.last(), t("new.priority.urgent"))
        await chat.photo(file_size=1000)
        await chat.press(chat.last(), t("new.button.continue"))
        await chat.press(chat.last(), t("new.button.submit"))

        first, second = recorder.created()
        assert (second.title, second.description, second.location) == (
            "Broken lift",
            "Stuck on floor 4",
            "Flat 3",
        )
        assert second.priority is Priority.URGENT and len(second.attachments) == 1
        assert second.idempotency_key != first.idempotency_key
        assert await chat.state() is None
        await chat.dp.storage.close()
    finally:
        await close_bot(bot)
        recorder.close()


async def test_over_the_new_request_limit_the_draft_waits_and_nothing_is_sent(
    sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER_LIMIT_NEW", "1/hour")
    get_settings.cache_clear()
    settings = get_settings()
    bot, recorder = create_bot(settings), Recorder()
    chat = Chat(sandbox, bot, create_dispatcher(settings, recorder))
    try:
        await complete(chat, "Flat 12")
        await reach(chat, "confirm", location="Flat 14")
        summary = chat.last()
        answer = await chat.press(summary, t("new.button.submit"))
        assert answer.startswith("You have sent many requests lately. You can send the next one")
        assert "your draft is kept" in answer
        assert len(recorder.created()) == 1  # the second was not enqueued
        assert await chat.state() == NewRequest.confirm.state  # the draft waits, Submit works
        assert (await chat.data())["location"] == "Flat 14"
    finally:
        await close_bot(bot)
        recorder.close()
