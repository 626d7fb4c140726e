"""The Telegram sandbox, driven by a real aiogram Bot."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from sandbox.html import HtmlParseError, parse_html
from sandbox.server import RunningSandbox, SandboxConfig, SandboxThread, start_sandbox
from sandbox.state import fake_jpeg

TOKEN = "123456:TEST"
USER = 1001


class Ctl:
    """Tiny client for the control API."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = session

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.post(self.url + path, json=body or {}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def get(self, path: str) -> Any:
        async with self.http.get(self.url + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def say(self, text: str, user_id: int = USER) -> Any:
        return await self.post("/sandbox/messages", {"user_id": user_id, "text": text})


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    sb = await start_sandbox()
    yield sb
    await sb.stop()


@pytest_asyncio.fixture
async def ctl(sandbox: RunningSandbox) -> AsyncIterator[Ctl]:
    async with aiohttp.ClientSession() as session:
        yield Ctl(sandbox.url, session)


class FastCloseSession(AiohttpSession):
    """aiogram sleeps 250 ms on close for TLS; plain HTTP to localhost doesn't need it."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(url: str, token: str = TOKEN) -> Bot:
    return Bot(token, session=FastCloseSession(api=TelegramAPIServer.from_base(url)))


@pytest_asyncio.fixture
async def bot(sandbox: RunningSandbox) -> AsyncIterator[Bot]:
    b = make_bot(sandbox.url)
    yield b
    await b.session.close()


@pytest_asyncio.fixture
async def user(ctl: Ctl) -> int:
    await ctl.post("/sandbox/users", {"id": USER, "first_name": "Ann", "language_code": "en"})
    return USER


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=d, callback_data=d) for d in data]]
    )


# ---------------------------------------------------------------- basics


@pytest.mark.asyncio
async def test_get_me(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot


@pytest.mark.asyncio
async def test_bad_token_and_unknown_method(sandbox: RunningSandbox, ctl: Ctl) -> None:
    bad = make_bot(sandbox.url, "12:bad!token")
    with pytest.raises(TelegramUnauthorizedError):
        await bad.get_me()
    await bad.session.close()
    async with ctl.http.post(f"{sandbox.url}/bot{TOKEN}/noSuchMethod") as resp:
        assert resp.status == 404
        assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


@pytest.mark.asyncio
async def test_updates_offset_confirms(bot: Bot, ctl: Ctl) -> None:
    pushed = await ctl.say("/start hello")
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [pushed["update_id"]]
    msg = updates[0].message
    assert msg is not None and msg.text == "/start hello" and msg.from_user is not None
    assert msg.entities is not None and msg.entities[0].type == "bot_command"
    # Without an offset the update stays; with offset = id + 1 it is forgotten.
    assert len(await bot.get_updates(timeout=0)) == 1
    assert await bot.get_updates(offset=pushed["update_id"] + 1, timeout=0) == []
    stats = await ctl.get("/sandbox/stats")
    assert stats["updates_pending"] == 0
    assert stats["confirmed_offset"] == pushed["update_id"] + 1


@pytest.mark.asyncio
async def test_long_poll_returns_on_update(bot: Bot, ctl: Ctl) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    assert not poll.done()
    await ctl.say("hi")
    updates = await asyncio.wait_for(poll, 3)
    assert len(updates) == 1
    assert time.monotonic() - started < 3
    # An empty long poll waits for its timeout and returns [].
    started = time.monotonic()
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=1) == []
    assert time.monotonic() - started >= 0.9


@pytest.mark.asyncio
async def test_send_message_with_keyboard_is_logged(bot: Bot, ctl: Ctl, user: int) -> None:
    sent = await bot.send_message(
        user, "<b>Pick</b> one", parse_mode="HTML", reply_markup=keyboard("yes", "no")
    )
    assert sent.text == "Pick one"
    assert sent.entities and sent.entities[0].type == "bold"
    assert sent.reply_markup is not None
    log = await ctl.get(f"/sandbox/chats/{user}/messages")
    assert len(log) == 1
    entry = log[0]
    assert entry["message_id"] == sent.message_id
    assert entry["method"] == "sendMessage"
    assert entry["text"] == "Pick one" and entry["source"] == "<b>Pick</b> one"
    assert entry["parse_mode"] == "HTML"
    buttons = entry["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == ["yes", "no"]
    assert await ctl.get(f"/sandbox/chats/{user}/messages?after={entry['seq']}") == []


@pytest.mark.asyncio
async def test_reply_keyboard_not_echoed_as_inline(bot: Bot, ctl: Ctl, user: int) -> None:
    markup = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="Menu")]], resize_keyboard=True)
    sent = await bot.send_message(user, "hi", reply_markup=markup)
    assert sent.reply_markup is None  # Message.reply_markup is inline-only on Telegram
    log = await ctl.get(f"/sandbox/chats/{user}/messages")
    assert log[0]["reply_markup"]["keyboard"][0][0]["text"] == "Menu"


@pytest.mark.asyncio
async def test_chat_log_long_poll(bot: Bot, ctl: Ctl, user: int) -> None:
    waiter = asyncio.create_task(ctl.get(f"/sandbox/chats/{user}/messages?after=0&wait=5"))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await bot.send_message(user, "ping")
    log = await asyncio.wait_for(waiter, 2)
    assert [m["text"] for m in log] == ["ping"]


# ---------------------------------------------------------------- validation


@pytest.mark.asyncio
async def test_text_length_limits(bot: Bot, user: int) -> None:
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(user, "x" * 4097)
    # Only visible characters count: tags and entities are not part of the limit.
    sent = await bot.send_message(user, "<b>" + "x" * 4095 + "&amp;</b>", parse_mode="HTML")
    assert sent.text is not None and len(sent.text) == 4096
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(user, "   ")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(user, BufferedInputFile(fake_jpeg(), "a.jpg"), caption="c" * 1025)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "text",
    [
        "<b>unclosed",
        "<b>x</i>",
        "<blink>x</blink>",
        "a < b",
        "fish & chips",
        "</b>",
        "<span>x</span>",
    ],
)
async def test_malformed_html_rejected(bot: Bot, user: int, text: str) -> None:
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(user, text, parse_mode="HTML")


@pytest.mark.asyncio
async def test_plain_text_is_not_parsed(bot: Bot, user: int) -> None:
    sent = await bot.send_message(user, "a < b & <c>")
    assert sent.text == "a < b & <c>"


def test_html_parser_entities() -> None:
    parsed = parse_html(
        '<b>bo<i>th</i></b> <a href="https://x.y/?a=1&amp;b=2">l</a> &#128512;<code>c</code>'
        '<tg-spoiler>s</tg-spoiler><span class="tg-spoiler">p</span><pre>q</pre>'
    )
    assert parsed.text == "both l \U0001f600csp" + "q"
    types = [(e["type"], e["offset"], e["length"]) for e in parsed.entities]
    # offsets are UTF-16: the emoji takes two units.
    assert ("bold", 0, 4) in types and ("italic", 2, 2) in types
    assert ("code", 9, 1) in types and ("spoiler", 10, 1) in types and ("pre", 12, 1) in types
    link = next(e for e in parsed.entities if e["type"] == "text_link")
    assert link["url"] == "https://x.y/?a=1&b=2"
    with pytest.raises(HtmlParseError, match="Unsupported start tag"):
        parse_html("<br>")


@pytest.mark.asyncio
async def test_callback_data_limit(bot: Bot, user: int) -> None:
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(user, "x", reply_markup=keyboard("d" * 65))
    # 64 bytes is fine, counted in UTF-8 bytes (32 two-byte letters).
    await bot.send_message(user, "x", reply_markup=keyboard("ж" * 32))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(user, "x", reply_markup=keyboard("ж" * 33))


@pytest.mark.asyncio
async def test_unknown_chat_and_blocked_user(bot: Bot, ctl: Ctl, user: int) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999999, "hello?")
    await ctl.post(f"/sandbox/users/{user}/block")
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(user, "hello?")
    await ctl.post(f"/sandbox/users/{user}/unblock")
    await bot.send_message(user, "hello again")


# ---------------------------------------------------------------- faults and limits


@pytest.mark.asyncio
async def test_injected_429(bot: Bot, ctl: Ctl, user: int) -> None:
    await ctl.post("/sandbox/faults", {"kind": "429", "retry_after": 7, "method": "sendMessage"})
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(user, "x")
    assert info.value.retry_after == 7
    await bot.send_message(user, "x")  # count=1: the next call succeeds
    stats = await ctl.get("/sandbox/stats")
    assert stats["rejected_429"] == 1 and stats["sent_total"] == 1


@pytest.mark.asyncio
async def test_fault_targets_chat_and_count(bot: Bot, ctl: Ctl, user: int) -> None:
    await ctl.post("/sandbox/users", {"id": 2002})
    await ctl.post("/sandbox/faults", {"kind": "403", "chat_id": 2002, "count": 2})
    await bot.send_message(user, "unaffected")
    for _ in range(2):
        with pytest.raises(TelegramForbiddenError):
            await bot.send_message(2002, "x")
    await bot.send_message(2002, "x")
    await ctl.post("/sandbox/faults", {"kind": "5xx", "count": 5})
    await ctl.http.delete(ctl.url + "/sandbox/faults")
    await bot.send_message(user, "faults cleared")


@pytest.mark.asyncio
async def test_injected_5xx_drop_latency(bot: Bot, ctl: Ctl, user: int) -> None:
    await ctl.post("/sandbox/faults", {"kind": "5xx", "status": 502})
    with pytest.raises(TelegramServerError):
        await bot.send_message(user, "x")
    await ctl.post("/sandbox/faults", {"kind": "drop"})
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(user, "x")
    await ctl.post("/sandbox/faults", {"kind": "latency", "delay": 0.3})
    started = time.monotonic()
    await bot.send_message(user, "slow")
    assert time.monotonic() - started >= 0.3
    # getMe is not a sending method, so a default fault never hits it.
    await ctl.post("/sandbox/faults", {"kind": "5xx"})
    await bot.get_me()
    with pytest.raises(TelegramServerError):
        await bot.send_message(user, "x")


@pytest.mark.asyncio
async def test_global_flood_limit(bot: Bot, ctl: Ctl) -> None:
    users = list(range(5000, 5031))
    for uid in users:
        await ctl.post("/sandbox/users", {"id": uid})
    results = await asyncio.gather(
        *(bot.send_message(uid, "hi") for uid in users), return_exceptions=True
    )
    limited = [r for r in results if isinstance(r, TelegramRetryAfter)]
    assert limited and all(r.retry_after >= 1 for r in limited)
    assert not [r for r in results if isinstance(r, Exception) and r not in limited]
    stats = await ctl.get("/sandbox/stats")
    assert stats["max_sends_in_1s_window"] <= 30
    assert stats["rejected_429"] == len(limited)
    assert stats["sent_total"] == 31 - len(limited)


@pytest.mark.asyncio
async def test_private_and_group_limits(bot: Bot, ctl: Ctl, user: int) -> None:
    for _ in range(5):
        await bot.send_message(user, "burst")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(user, "one too many")
    await ctl.post("/sandbox/chats", {"id": -100123, "title": "Ops"})
    await ctl.post("/sandbox/config", {"group_chat_per_min": 2, "private_chat_burst": 100})
    await bot.send_message(-100123, "g1")
    await bot.send_message(-100123, "g2")
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(-100123, "g3")
    assert 1 <= info.value.retry_after <= 60
    await ctl.post("/sandbox/config", {"flood_limits": False})
    await bot.send_message(-100123, "g3")


# ---------------------------------------------------------------- files


@pytest.mark.asyncio
async def test_photo_upload_roundtrip(bot: Bot, ctl: Ctl, user: int) -> None:
    data = fake_jpeg(640, 480)
    sent = await bot.send_photo(
        user, BufferedInputFile(data, "p.jpg"), caption="<i>look</i>", parse_mode="HTML"
    )
    assert sent.photo is not None and len(sent.photo) == 2
    assert (sent.photo[-1].width, sent.photo[-1].height) == (640, 480)
    assert sent.caption == "look"
    file = await bot.get_file(sent.photo[-1].file_id)
    assert file.file_path
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == data
    # Re-sending by file_id works; unknown ids and non-images are rejected like Telegram.
    again = await bot.send_photo(user, sent.photo[-1].file_id)
    assert again.photo is not None and again.photo[-1].file_id == sent.photo[-1].file_id
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(user, "AgACnope")
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(user, BufferedInputFile(b"not an image", "x.jpg"))
    log = await ctl.get(f"/sandbox/chats/{user}/messages")
    assert log[0]["photo"] == sent.photo[-1].file_id


@pytest.mark.asyncio
async def test_user_files_download_and_document(bot: Bot, ctl: Ctl, user: int) -> None:
    content = b"%PDF-1.4 fake"
    pushed = await ctl.post(
        "/sandbox/documents",
        {
            "user_id": user,
            "file_name": "act.pdf",
            "mime_type": "application/pdf",
            "caption": "act",
            "content_b64": base64.b64encode(content).decode(),
        },
    )
    [update] = await bot.get_updates(timeout=0)
    assert update.message is not None and update.message.document is not None
    assert update.message.document.file_id == pushed["file_id"]
    assert update.message.document.file_name == "act.pdf"
    got = await bot.download(pushed["file_id"])
    assert got is not None and got.read() == content
    photo = await ctl.post("/sandbox/photos", {"user_id": user, "caption": "broken tap"})
    file = await bot.get_file(photo["file_id"])
    assert file.file_size and file.file_size > 0
    big = await ctl.post(
        "/sandbox/documents",
        {"user_id": user, "file_name": "big.zip", "file_size": 30 * 1024 * 1024},
    )
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(big["file_id"])
    sent = await bot.send_document(user, pushed["file_id"], caption="forwarded")
    assert sent.document is not None and sent.document.file_id == pushed["file_id"]
    with pytest.raises(TelegramBadRequest, match="can't use file of type Document as Photo"):
        await bot.send_photo(user, pushed["file_id"])
    up = await bot.send_document(user, BufferedInputFile(b"a,b\n1,2\n", "r.csv"))
    assert up.document is not None and up.document.file_name == "r.csv"


@pytest.mark.asyncio
async def test_send_media_group(bot: Bot, ctl: Ctl, user: int) -> None:
    pushed = await ctl.post("/sandbox/photos", {"user_id": user})
    media: list[Any] = [
        InputMediaPhoto(
            media=BufferedInputFile(fake_jpeg(), "1.jpg"), caption="<b>one</b>", parse_mode="HTML"
        ),
        InputMediaPhoto(media=pushed["file_id"]),
    ]
    msgs = await bot.send_media_group(user, media)
    assert len(msgs) == 2
    assert msgs[0].media_group_id and msgs[0].media_group_id == msgs[1].media_group_id
    assert msgs[0].caption == "one"
    log = await ctl.get(f"/sandbox/chats/{user}/messages")
    assert [m["method"] for m in log] == ["sendMediaGroup", "sendMediaGroup"]
    with pytest.raises(TelegramBadRequest):
        await bot.send_media_group(user, media[:1])


# ---------------------------------------------------------------- edits and callbacks


@pytest.mark.asyncio
async def test_edit_message(bot: Bot, ctl: Ctl, user: int) -> None:
    sent = await bot.send_message(user, "v1", reply_markup=keyboard("a"))
    [first] = await ctl.get(f"/sandbox/chats/{user}/messages")
    edited = await bot.edit_message_text(
        "v2", chat_id=user, message_id=sent.message_id, reply_markup=keyboard("a")
    )
    assert not isinstance(edited, bool) and edited.text == "v2" and edited.edit_date
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "v2", chat_id=user, message_id=sent.message_id, reply_markup=keyboard("a")
        )
    log = await ctl.get(f"/sandbox/chats/{user}/messages?after={first['seq']}")
    assert len(log) == 1 and log[0]["edited"] and log[0]["text"] == "v2"
    # Dropping the keyboard is a modification.
    await bot.edit_message_reply_markup(chat_id=user, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=user, message_id=9999)
    assert await bot.delete_message(user, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(user, sent.message_id)
    [entry] = await ctl.get(f"/sandbox/chats/{user}/messages")
    assert entry["deleted"]


@pytest.mark.asyncio
async def test_callback_query_and_answer(bot: Bot, ctl: Ctl, user: int) -> None:
    sent = await bot.send_message(user, "Accept?", reply_markup=keyboard("accept"))
    pressed = await ctl.post(
        "/sandbox/callbacks", {"user_id": user, "message_id": sent.message_id, "data": "accept"}
    )
    [update] = await bot.get_updates(timeout=0)
    cq = update.callback_query
    assert cq is not None and cq.id == pressed["callback_query_id"] and cq.data == "accept"
    assert cq.message is not None and cq.message.message_id == sent.message_id
    assert await bot.answer_callback_query(cq.id, text="Done")
    answers = await ctl.get(f"/sandbox/callback_answers?query_id={cq.id}")
    assert answers[0]["text"] == "Done"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(cq.id)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("123")


# ---------------------------------------------------------------- misc methods


@pytest.mark.asyncio
async def test_commands_and_chat_action(bot: Bot, user: int) -> None:
    assert await bot.set_my_commands([BotCommand(command="start", description="Start")])
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad Command", description="x")])
    assert await bot.send_chat_action(user, "typing")


@pytest.mark.asyncio
async def test_form_encoded_and_json_bodies(sandbox: RunningSandbox, ctl: Ctl, user: int) -> None:
    url = f"{sandbox.url}/bot{TOKEN}/sendMessage"
    markup = '{"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}'
    async with ctl.http.post(
        url, data={"chat_id": str(user), "text": "form", "reply_markup": markup}
    ) as resp:
        body = await resp.json()
        assert body["ok"] and body["result"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "A"
    async with ctl.http.post(url, json={"chat_id": user, "text": ""}) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: message text is empty",
        }
    async with ctl.http.get(url, params={"chat_id": str(user), "text": "via GET"}) as resp:
        assert (await resp.json())["result"]["text"] == "via GET"


@pytest.mark.asyncio
async def test_reset(bot: Bot, ctl: Ctl, user: int) -> None:
    await bot.send_message(user, "x")
    await ctl.post("/sandbox/reset")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(user, "x")
    stats = await ctl.get("/sandbox/stats")
    assert stats["sent_total"] == 0


# ---------------------------------------------------------------- webhook


@pytest.mark.asyncio
async def test_webhook_delivery_with_secret_and_retry(bot: Bot, ctl: Ctl) -> None:
    received: list[tuple[dict[str, Any], str | None]] = []
    fail_first = [True]

    async def hook(request: web.Request) -> web.Response:
        if fail_first[0]:
            fail_first[0] = False
            return web.Response(status=500)
        received.append(
            (await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        )
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cr3t")
        with pytest.raises(TelegramConflictError):
            await bot.get_updates(timeout=0)
        pushed = await ctl.say("via webhook")
        for _ in range(50):  # first attempt fails (500), the retry ~1 s later succeeds
            if received:
                break
            await asyncio.sleep(0.1)
        assert received, "update was not redelivered after a failed attempt"
        update, secret = received[0]
        assert update["update_id"] == pushed["update_id"] and secret == "s3cr3t"
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook") and info.pending_update_count == 0
        assert info.last_error_message
        assert await bot.delete_webhook()
        assert await bot.get_updates(timeout=0) == []
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------- thread helper


def test_sandbox_thread_sync_usage() -> None:
    import json
    import urllib.request

    with SandboxThread(config=SandboxConfig(flood_limits=False)) as sb:
        assert sb.port > 0 and sb.url.endswith(str(sb.port))
        with urllib.request.urlopen(f"{sb.url}/bot{TOKEN}/getMe") as resp:
            assert json.load(resp)["result"]["id"] == 123456
    # After stopping, the port is closed.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{sb.url}/bot{TOKEN}/getMe", timeout=1)


# ---------------------------------------------------------------- a whole aiogram bot


def _dispatcher() -> Dispatcher:
    dp = Dispatcher()

    @dp.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer("Hi <b>there</b>", parse_mode="HTML", reply_markup=keyboard("go"))

    @dp.callback_query(F.data == "go")
    async def go(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        await query.message.edit_text("Went")
        await query.answer("ok")

    @dp.message()
    async def echo(message: Message) -> Any:
        return message.answer(f"echo {message.text}")  # webhook mode: reply in the response

    return dp


@pytest.mark.asyncio
async def test_dispatcher_polling_end_to_end(bot: Bot, ctl: Ctl) -> None:
    dp = _dispatcher()
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        await ctl.say("/start", user_id=5)
        [hello] = await ctl.get("/sandbox/chats/5/messages?wait=3")
        assert hello["text"] == "Hi there"
        await ctl.post(
            "/sandbox/callbacks", {"user_id": 5, "message_id": hello["message_id"], "data": "go"}
        )
        [went] = await ctl.get(f"/sandbox/chats/5/messages?after={hello['seq']}&wait=3")
        assert went["edited"] and went["text"] == "Went" and went["reply_markup"] is None
        for _ in range(30):
            if answers := await ctl.get("/sandbox/callback_answers"):
                break
            await asyncio.sleep(0.05)
        assert answers[0]["text"] == "ok"
    finally:
        await dp.stop_polling()
        await polling


@pytest.mark.asyncio
async def test_webhook_response_method_is_executed(bot: Bot, ctl: Ctl) -> None:
    app = web.Application()
    SimpleRequestHandler(
        dispatcher=_dispatcher(), bot=bot, handle_in_background=False, secret_token="abc"
    ).register(app, path="/wh")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/wh", secret_token="abc")
        await ctl.say("yo", user_id=5)
        [reply] = await ctl.get("/sandbox/chats/5/messages?wait=3")
        assert reply["text"] == "echo yo"
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------- benchmark support


@pytest.mark.asyncio
async def test_bulk_users_stats_reset_and_send_log(bot: Bot, ctl: Ctl) -> None:
    users = await ctl.post("/sandbox/users", [{"id": 501}, {"id": 502}, {"id": 503}])
    assert [u["id"] for u in users] == [501, 502, 503]
    for chat in (501, 502, 502):
        await bot.send_message(chat, "hi")
    stats = await ctl.get("/sandbox/stats")
    assert (stats["chats_sent_to"], stats["duplicate_sends"]) == (2, 1)
    assert stats["first_send_at"] <= stats["last_send_at"]
    sends = (await ctl.get("/sandbox/sends"))["sends"]
    assert [(s["chat_id"], s["accepted"]) for s in sends] == [(501, True), (502, True), (502, True)]

    await ctl.post("/sandbox/stats/reset", {})
    stats = await ctl.get("/sandbox/stats")
    assert (stats["sent_total"], stats["chats_sent_to"], stats["duplicate_sends"]) == (0, 0, 0)
    assert (await ctl.get("/sandbox/sends"))["sends"] == []
    await bot.send_message(503, "still known")  # users and chats survive a stats reset
