"""A terminal chat left open across sandbox restarts and resets carries on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO, cast

import aiohttp
import pytest
import pytest_asyncio

from sandbox.chat import UNREACHABLE, chat
from sandbox.server import RunningSandbox, start_sandbox

USER = 778
TOKEN = "42:FAKE"


class TypedLines:
    """stdin that a test types into; readline blocks like a pipe's."""

    def __init__(self) -> None:
        self._lines: queue.Queue[str] = queue.Queue()

    def type(self, line: str) -> None:
        self._lines.put(line + "\n")

    def end(self) -> None:
        self._lines.put("")  # EOF: the client's reader thread ends

    def readline(self) -> str:
        return self._lines.get()

    def isatty(self) -> bool:
        return False


class OpenChat:
    """`zavhoz chat` running against a sandbox URL that the test restarts under it."""

    def __init__(self, url: str) -> None:
        self.stdin = TypedLines()
        self.out = io.StringIO()
        self.task = asyncio.create_task(
            chat(url, USER, first_name="Ann", stdin=cast(TextIO, self.stdin), stdout=self.out)
        )

    @property
    def text(self) -> str:
        return self.out.getvalue()

    async def shows(self, line: str, timeout: float = 10) -> None:
        await until(lambda: line in self.text.splitlines(), timeout, f"{line!r} in {self.text!r}")
        assert not self.task.done(), "the chat client exited"

    async def close(self) -> None:
        self.stdin.type("/quit")
        try:
            await asyncio.wait_for(self.task, 10)
        finally:
            self.stdin.end()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def bot_says(http: aiohttp.ClientSession, url: str, text: str, retry: float = 0) -> None:
    """sendMessage as the bot; with ``retry``, until the chat is known (the client re-registers)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry
    while True:
        async with http.post(
            f"{url}/bot{TOKEN}/sendMessage", json={"chat_id": USER, "text": text}
        ) as resp:
            body: dict[str, Any] = await resp.json()
        if body["ok"] or loop.time() > deadline:
            assert body["ok"], body
            return
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_reconnects_after_restart_with_state(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    sb: RunningSandbox = await start_sandbox(port=port, state_dir=tmp_path)
    client = OpenChat(sb.url)
    try:
        await until(lambda: "Sandbox chat" in client.text, 10, "the banner")
        await bot_says(http, sb.url, "before restart")
        await client.shows("bot: before restart")
        await sb.stop()
        await client.shows(UNREACHABLE)
        # A line typed meanwhile waits for the sandbox instead of killing the client.
        client.stdin.type("typed while down")
        await asyncio.sleep(2.5)  # a few retries: still one line, no traceback
        sb = await start_sandbox(port=port, state_dir=tmp_path)
        await until(lambda: bool(sb.state.updates), 10, "the typed line to arrive")
        assert sb.state.updates[-1]["message"]["text"] == "typed while down"
        await bot_says(http, sb.url, "after restart")
        await client.shows("bot: after restart")
        lines = client.text.splitlines()
        assert lines.count(UNREACHABLE) == 1
        assert lines.count("bot: before restart") == 1  # history is not replayed
        assert not any(line.startswith("Traceback") for line in lines)
        await client.close()
    finally:
        with contextlib.suppress(Exception):  # may already be stopped
            await sb.stop()


@pytest.mark.asyncio
async def test_resyncs_after_reset(http: aiohttp.ClientSession) -> None:
    sb = await start_sandbox()
    client = OpenChat(sb.url)
    try:
        await until(lambda: "Sandbox chat" in client.text, 10, "the banner")
        for n in range(3):
            await bot_says(http, sb.url, f"old {n}")
        await client.shows("bot: old 2")
        async with http.post(sb.url + "/sandbox/reset", json={}) as resp:
            assert resp.status == 200
        # seq starts over below what the client has seen; the client re-registers its user.
        await bot_says(http, sb.url, "after reset", retry=10)
        await client.shows("bot: after reset")
        lines = client.text.splitlines()
        assert [line for line in lines if line.startswith("bot: old")] == [
            "bot: old 0",
            "bot: old 1",
            "bot: old 2",
        ]
        assert UNREACHABLE not in lines
        await client.close()
    finally:
        with contextlib.suppress(Exception):  # may already be stopped
            await sb.stop()


@pytest.mark.asyncio
async def test_resyncs_after_restart_without_state(http: aiohttp.ClientSession) -> None:
    port = free_port()
    sb = await start_sandbox(port=port)
    client = OpenChat(sb.url)
    try:
        await until(lambda: "Sandbox chat" in client.text, 10, "the banner")
        for n in range(3):
            await bot_says(http, sb.url, f"old {n}")
        await client.shows("bot: old 2")
        await sb.stop()
        await client.shows(UNREACHABLE)
        sb = await start_sandbox(port=port)  # empty: the chat is unknown until re-registered
        await bot_says(http, sb.url, "fresh", retry=10)
        await client.shows("bot: fresh")
        assert client.text.splitlines().count("bot: old 2") == 1
        await client.close()
    finally:
        with contextlib.suppress(Exception):  # may already be stopped
            await sb.stop()
