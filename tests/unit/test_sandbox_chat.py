"""The terminal chat, driven through a pipe against a sandbox and a tiny aiogram bot."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    Update,
)

from sandbox.chat import chat
from sandbox.server import RunningSandbox, start_sandbox
from sandbox.state import fake_jpeg

USER = 777


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    sb = await start_sandbox()
    yield sb
    await sb.stop()


async def fake_bot(url: str, seen: list[Update]) -> None:
    """Replies to text with an inline keyboard, to callbacks with an edit + toast."""
    bot = Bot("42:FAKE", session=AiohttpSession(api=TelegramAPIServer.from_base(url)))
    offset = 0
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="Accept", callback_data="req:1:accept"),
                InlineKeyboardButton(text="Reject", callback_data="req:1:reject"),
            ]
        ]
    )
    try:
        while True:
            for update in await bot.get_updates(offset=offset, timeout=5):
                offset = update.update_id + 1
                seen.append(update)
                if update.message and update.message.text == "menu":
                    kb = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="Status")]])
                    await bot.send_message(USER, "Menu:", reply_markup=kb)
                elif update.message and update.message.photo:
                    await bot.send_message(USER, f"Got photo: {update.message.caption}")
                elif update.message:
                    await bot.send_message(
                        USER,
                        f"<b>New request</b> &lt;{update.message.text}&gt;",
                        parse_mode="HTML",
                        reply_markup=markup,
                    )
                elif cq := update.callback_query:
                    assert cq.message is not None
                    await bot.edit_message_text(
                        f"Decision: {cq.data}", chat_id=USER, message_id=cq.message.message_id
                    )
                    await bot.answer_callback_query(cq.id, text="Saved")
    finally:
        await bot.session.close()


async def run_chat_with(url: str, script: str) -> str:
    out = io.StringIO()
    await asyncio.wait_for(
        chat(url, USER, first_name="Ann", stdin=io.StringIO(script), stdout=out), 20
    )
    return out.getvalue()


@pytest.mark.asyncio
async def test_piped_chat_buttons_and_callback(sandbox: RunningSandbox) -> None:
    seen: list[Update] = []
    bot_task = asyncio.create_task(fake_bot(sandbox.url, seen))
    try:
        output = await run_chat_with(sandbox.url, "leaky tap\n!1\n")
    finally:
        bot_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bot_task
    lines = output.splitlines()
    assert lines[0].startswith("Sandbox chat with the bot")
    assert "bot: New request <leaky tap>" in lines  # HTML rendered as visible text
    assert "     [1] Accept  [2] Reject" in lines
    assert "you pressed [Accept]" in lines
    assert "bot (edited): Decision: req:1:accept" in lines
    callbacks = [u.callback_query for u in seen if u.callback_query]
    assert len(callbacks) == 1 and callbacks[0].data == "req:1:accept"
    assert callbacks[0].from_user.first_name == "Ann"


@pytest.mark.asyncio
async def test_piped_chat_reply_keyboard_and_photo(sandbox: RunningSandbox, tmp_path: Path) -> None:
    photo = tmp_path / "tap.jpg"
    photo.write_bytes(fake_jpeg())
    seen: list[Update] = []
    bot_task = asyncio.create_task(fake_bot(sandbox.url, seen))
    try:
        output = await run_chat_with(
            sandbox.url, f"menu\n!1\n/photo {photo} broken tap\n!9\n/quit\nnot sent\n"
        )
    finally:
        bot_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bot_task
    assert "     keyboard: [1] Status" in output
    texts = [u.message.text for u in seen if u.message and u.message.text]
    assert texts == ["menu", "Status"]  # reply-keyboard press sends its text; /quit stops
    assert "bot: Got photo: broken tap" in output
    assert "! no button 9" in output


@pytest.mark.asyncio
async def test_a_chat_opened_again_shows_the_last_messages_and_their_buttons(
    sandbox: RunningSandbox,
) -> None:
    seen: list[Update] = []
    bot_task = asyncio.create_task(fake_bot(sandbox.url, seen))
    try:
        await run_chat_with(sandbox.url, "leaky tap\n")
        again = await run_chat_with(sandbox.url, "!1\n")  # the terminal closed and reopened
    finally:
        bot_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bot_task
    lines = again.splitlines()
    assert lines[1] == "(the last 1 of 1 before)"
    assert "bot: New request <leaky tap>" in lines
    assert "you pressed [Accept]" in lines
    assert "bot (edited): Decision: req:1:accept" in lines
