"""The sandbox with a state dir keeps its world across restarts, SIGKILL included."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import BotCommand, BufferedInputFile

from sandbox.persist import FILE_NAME, StateInUse, Store
from sandbox.server import RunningSandbox, start_sandbox
from sandbox.state import fake_jpeg

TOKEN = "123456:TEST"
USER = 1001
ROOT = Path(__file__).resolve().parents[2]


class FastCloseSession(AiohttpSession):
    """aiogram sleeps 250 ms on close for TLS; plain HTTP to localhost doesn't need it."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(url: str) -> Bot:
    return Bot(TOKEN, session=FastCloseSession(api=TelegramAPIServer.from_base(url)))


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def ctl(http: aiohttp.ClientSession, url: str, path: str, body: Any = None) -> Any:
    method = "GET" if body is None else "POST"
    async with http.request(method, url + path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def download(bot: Bot, file_id: str) -> bytes:
    out = io.BytesIO()
    await bot.download(file_id, destination=out)
    return out.getvalue()


@pytest.mark.asyncio
async def test_state_survives_a_restart(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    user_jpeg, bot_jpeg = fake_jpeg(640, 480), fake_jpeg(320, 200)
    sb = await start_sandbox(state_dir=tmp_path)
    bot = make_bot(sb.url)
    try:
        await ctl(http, sb.url, "/sandbox/users", {"id": USER, "first_name": "Ann"})
        first = await ctl(http, sb.url, "/sandbox/messages", {"user_id": USER, "text": "one"})
        photo = await ctl(
            http,
            sb.url,
            "/sandbox/photos",
            {"user_id": USER, "content_b64": base64.b64encode(user_jpeg).decode()},
        )
        # The bot confirms the first update only; the photo stays pending.
        got = await bot.get_updates(offset=first["update_id"] + 1, timeout=0)
        assert [u.update_id for u in got] == [photo["update_id"]]
        reply = await bot.send_message(USER, "reply one")
        sent_photo = await bot.send_photo(USER, BufferedInputFile(bot_jpeg, "b.jpg"))
        assert sent_photo.photo is not None
        bot_file = sent_photo.photo[-1].file_id
        doc = await bot.send_document(USER, BufferedInputFile(b"a,b\n1,2\n", "r.csv"))
        assert doc.document is not None
        await bot.set_my_commands([BotCommand(command="new", description="New request")])
        press = await ctl(
            http,
            sb.url,
            "/sandbox/callbacks",
            {"user_id": USER, "message_id": reply.message_id, "data": "go"},
        )
        history = await ctl(http, sb.url, f"/sandbox/chats/{USER}/messages")
        stats = await ctl(http, sb.url, "/sandbox/stats")
        handed_out = [first["update_id"], photo["update_id"], press["update_id"]]
    finally:
        await bot.session.close()
        await sb.stop()

    sb = await start_sandbox(state_dir=tmp_path)
    bot = make_bot(sb.url)
    try:
        assert (await ctl(http, sb.url, "/sandbox/stats"))["generation"] == stats["generation"]
        pending = await bot.get_updates(timeout=0)
        assert [u.update_id for u in pending] == handed_out[1:]
        assert pending[0].message is not None and pending[0].message.photo
        assert pending[1].callback_query is not None
        assert await bot.answer_callback_query(pending[1].callback_query.id, text="ok")
        later = await ctl(http, sb.url, "/sandbox/messages", {"user_id": USER, "text": "two"})
        assert later["update_id"] > max(handed_out)
        assert later["message_id"] == doc.message_id + 1  # one counter per chat, both sides
        # Files uploaded by the user and by the bot before the restart: resend, get, download.
        user_file = photo["file_id"]
        for file_id, data in ((user_file, user_jpeg), (bot_file, bot_jpeg)):
            again = await bot.send_photo(USER, file_id)
            assert again.photo is not None and again.photo[-1].file_id == file_id
            assert await download(bot, file_id) == data
        assert await download(bot, doc.document.file_id) == b"a,b\n1,2\n"
        text = await bot.send_message(USER, "reply two")
        assert text.message_id == later["message_id"] + 3
        log = await ctl(http, sb.url, f"/sandbox/chats/{USER}/messages")
        assert log[: len(history)] == history
        assert log[-1]["text"] == "reply two" and log[-1]["seq"] > history[-1]["seq"]
        assert [c.command for c in await bot.get_my_commands()] == ["new"]
        # Reset through the control API empties the disk too, except the update id counter.
        await ctl(http, sb.url, "/sandbox/reset", {})
    finally:
        await bot.session.close()
        await sb.stop()

    sb = await start_sandbox(state_dir=tmp_path)
    bot = make_bot(sb.url)
    try:
        assert await bot.get_updates(timeout=0) == []
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await bot.send_message(USER, "gone")
        with pytest.raises(TelegramBadRequest, match="invalid file_id"):
            await bot.get_file(user_file)
        assert await bot.get_my_commands() == []
        fresh = await ctl(http, sb.url, "/sandbox/messages", {"user_id": USER, "text": "new"})
        assert fresh["update_id"] > later["update_id"] and fresh["message_id"] == 1
    finally:
        await bot.session.close()
        await sb.stop()


@pytest.mark.asyncio
async def test_webhook_and_blocked_user_survive(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    sb = await start_sandbox(state_dir=tmp_path)
    bot = make_bot(sb.url)
    try:
        await ctl(http, sb.url, "/sandbox/users/55/block", {})
        # Nothing listens there: deliveries fail, the update stays pending.
        assert await bot.set_webhook("http://127.0.0.1:9/hook")
        await ctl(http, sb.url, "/sandbox/messages", {"user_id": 56, "text": "hi"})
    finally:
        await bot.session.close()
        await sb.stop()
    sb = await start_sandbox(state_dir=tmp_path)
    bot = make_bot(sb.url)
    try:
        info = await bot.get_webhook_info()
        assert info.url == "http://127.0.0.1:9/hook" and info.pending_update_count == 1
        assert await bot.delete_webhook()
        assert len(await bot.get_updates(timeout=0)) == 1
        with pytest.raises(TelegramForbiddenError, match="blocked"):
            await bot.send_message(55, "x")
    finally:
        await bot.session.close()
        await sb.stop()


@pytest.mark.asyncio
async def test_without_state_dir_nothing_is_written(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    sb: RunningSandbox = await start_sandbox()
    bot = make_bot(sb.url)
    try:
        assert sb.state.disk is None
        await ctl(http, sb.url, "/sandbox/photos", {"user_id": USER})
        await bot.send_document(USER, BufferedInputFile(b"data", "d.txt"))
        await bot.send_message(USER, "hi")
        assert (await ctl(http, sb.url, "/sandbox/stats"))["persistent"] is False
    finally:
        await bot.session.close()
        await sb.stop()
    assert list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _spawn(
    port: int, state_dir: Path, http: aiohttp.ClientSession
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--state-dir", str(state_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            async with http.get(f"http://127.0.0.1:{port}/sandbox/stats") as resp:
                if resp.status == 200:
                    return proc
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("sandbox subprocess did not start")


@pytest.mark.asyncio
async def test_survives_sigkill(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await _spawn(port, tmp_path, http)
    try:
        pushed = await ctl(http, url, "/sandbox/messages", {"user_id": USER, "text": "help"})
        bot = make_bot(url)
        try:
            sent = await bot.send_message(USER, "on it")
        finally:
            await bot.session.close()
        # SIGKILL right after the answers: no shutdown hook runs, the WAL is not checkpointed.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert (tmp_path / FILE_NAME).exists()
        proc = await _spawn(port, tmp_path, http)
        bot = make_bot(url)
        try:
            updates = await bot.get_updates(timeout=0)
            assert [u.update_id for u in updates] == [pushed["update_id"]]
            log = await ctl(http, url, f"/sandbox/chats/{USER}/messages")
            assert [(m["message_id"], m["text"]) for m in log] == [(sent.message_id, "on it")]
            again = await ctl(http, url, "/sandbox/messages", {"user_id": USER, "text": "more"})
            assert again["update_id"] > pushed["update_id"]
            assert again["message_id"] == sent.message_id + 1
        finally:
            await bot.session.close()
    finally:
        proc.kill()
        proc.wait(10)


def test_one_sandbox_per_state_file(tmp_path: Path) -> None:
    first = Store(tmp_path)
    try:
        with pytest.raises(StateInUse):
            Store(tmp_path)  # it would hand out the same update ids
    finally:
        first.close()
    Store(tmp_path).close()  # free again once the first one is gone
