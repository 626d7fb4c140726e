"""Talk to the bot from a terminal through the sandbox's control API (no Telegram needed)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
import shlex
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from sandbox.html import strip_html

BANNER = (
    "Sandbox chat with the bot at {url} as user {uid} ({name}). Type a message; "
    "!N presses button N; /photo PATH [caption], /doc PATH [caption] send files; /quit exits."
)
REPLY_TIMEOUT = 5.0  # piped input: how long to wait for the bot's first reply to a line
QUIET = 0.4  # piped input: the reply is complete after this long without new messages
EOF_GRACE = 1.0
EARLIER = 3  # messages shown again when a chat opens on a conversation under way
RETRY = 1.0  # while the sandbox is unreachable (restarting), try again this often
SEND_PATIENCE = 60.0  # how long a typed line waits for the sandbox to come back
UNREACHABLE = "! sandbox unreachable, retrying…"
GENERATION_HEADER = "X-Sandbox-Generation"  # sandbox/control.py; new value: seq starts over


@dataclass
class Button:
    text: str
    message_id: int
    callback_data: str | None = None
    url: str | None = None
    reply: bool = False  # reply-keyboard button: pressing sends its text


def _buttons(entry: dict[str, Any]) -> list[Button] | None:
    """Buttons of a logged message; None if its markup doesn't affect the keyboard."""
    markup = entry.get("reply_markup") or {}
    if "inline_keyboard" in markup:
        return [
            Button(b.get("text", "?"), entry["message_id"], b.get("callback_data"), b.get("url"))
            for row in markup["inline_keyboard"]
            for b in row
        ]
    if "keyboard" in markup:
        return [
            Button(b["text"] if isinstance(b, dict) else str(b), entry["message_id"], reply=True)
            for row in markup["keyboard"]
            for b in row
        ]
    if markup.get("remove_keyboard"):
        return []
    return None


def render(entry: dict[str, Any], buttons: list[Button] | None) -> str:
    if entry.get("deleted"):
        return f"bot: (message {entry['message_id']} deleted)"
    parts: list[str] = []
    if entry.get("photo"):
        parts.append("[photo]")
    if entry.get("document"):
        parts.append("[document]")
    body = entry.get("text") or entry.get("caption") or ""
    if not body and str(entry.get("parse_mode") or "").lower() == "html":
        body = strip_html(entry.get("source") or "")  # the sandbox normally stores visible text
    if body:
        parts.append(body)
    head = "bot (edited): " if entry.get("edited") else "bot: "
    text = head + " ".join(parts)
    text = text.replace("\n", "\n     ")
    if buttons:
        label = "keyboard: " if buttons[0].reply else ""
        numbered = "  ".join(f"[{i}] {b.text}" for i, b in enumerate(buttons, 1))
        text += f"\n     {label}{numbered}"
    return text


class ChatClient:
    def __init__(
        self,
        base_url: str,
        user_id: int,
        first_name: str,
        language_code: str,
        stdin: TextIO,
        stdout: TextIO,
    ) -> None:
        self.url = base_url.rstrip("/")
        self.user_id = user_id
        self.first_name = first_name
        self.language_code = language_code
        self.stdin = stdin
        self.stdout = stdout
        self.seq = 0
        self.generation: str | None = None
        self.offline = False  # said UNREACHABLE and not yet heard back from the sandbox
        self.buttons: list[Button] = []
        self.buttons_message: int | None = None
        self.changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        try:
            self.piped = not stdin.isatty()
        except (AttributeError, ValueError):
            self.piped = True

    def say(self, line: str) -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def _unreachable(self) -> None:
        if not self.offline:  # one line per outage, however long it lasts
            self.offline = True
            self.say(UNREACHABLE)

    def _reachable(self) -> None:
        if self.offline:
            self.offline = False
            self.say("! sandbox is back")

    async def _post(self, http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEND_PATIENCE
        while True:
            try:
                async with http.post(self.url + path, json=body) as resp:
                    self._reachable()
                    if resp.status != 200:
                        self.say(f"! sandbox refused: {resp.status} {await resp.text()}")
                        return None
                    return await resp.json()
            except aiohttp.ClientConnectorError:
                # Nothing reached the sandbox, so sending again can't duplicate anything.
                self._unreachable()
                if loop.time() > deadline:
                    self.say("! not sent: the sandbox did not come back")
                    return None
                await asyncio.sleep(RETRY)
            except (aiohttp.ClientError, TimeoutError):
                self._unreachable()
                self.say("! the sandbox went away mid-request; this may not have been sent")
                return None

    def _show(self, entry: dict[str, Any]) -> None:
        buttons = _buttons(entry)
        if buttons is not None and (buttons or entry["message_id"] == self.buttons_message):
            self.buttons, self.buttons_message = buttons, entry["message_id"]
        elif entry.get("edited") and entry["message_id"] == self.buttons_message:
            self.buttons, self.buttons_message = [], None  # the edit removed its keyboard
        self.say(render(entry, buttons))

    async def _register(self, http: aiohttp.ClientSession) -> None:
        """Make the user known, so the bot can write first (also after a sandbox reset)."""
        await self._post(
            http,
            "/sandbox/users",
            {
                "id": self.user_id,
                "first_name": self.first_name,
                "language_code": self.language_code,
            },
        )

    async def _poll(self, http: aiohttp.ClientSession, wait: float) -> list[dict[str, Any]]:
        """Bot messages after ``self.seq``; notices a sandbox whose numbering started over."""
        path = f"{self.url}/sandbox/chats/{self.user_id}/messages"
        while True:
            params = {"after": str(self.seq), "wait": str(wait)}
            if self.generation is not None:
                params["generation"] = self.generation
            async with http.get(path, params=params) as resp:
                resp.raise_for_status()
                entries: list[dict[str, Any]] = await resp.json()
                generation = resp.headers.get(GENERATION_HEADER)
            if generation == self.generation or self.generation is None:
                self.generation = generation
                return entries
            # A reset, or a restart without a state dir: seq numbering started over and all
            # that is there now was said after we last looked, so read it from the start.
            self.generation = generation
            self.seq = 0
            await self._register(http)

    async def receive(self, http: aiohttp.ClientSession) -> None:
        while True:
            try:
                entries = await self._poll(http, 20)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                self._unreachable()
                await asyncio.sleep(RETRY)
                continue
            self._reachable()
            for entry in entries:
                self.seq = max(self.seq, entry["seq"])
                self._show(entry)
            if entries:
                self.changed.set()

    async def settle(self, first_wait: float) -> None:
        """Wait for the bot's reply to finish arriving (used for piped input)."""
        try:
            await asyncio.wait_for(self.changed.wait(), first_wait)
        except TimeoutError:
            return
        while True:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), QUIET)
            except TimeoutError:
                return

    async def press(self, http: aiohttp.ClientSession, n: int) -> bool:
        """Press button N; True if the bot got an update (so a reply may follow)."""
        if not 1 <= n <= len(self.buttons):
            self.say(f"! no button {n}" + ("" if self.buttons else " (no buttons yet)"))
            return False
        button = self.buttons[n - 1]
        if button.reply:
            return await self.send_text(http, button.text)
        if button.url:
            self.say(f"(link: {button.url})")
            return False
        if button.callback_data is not None:
            self.say(f"you pressed [{button.text}]")
            res = await self._post(
                http,
                "/sandbox/callbacks",
                {
                    "user_id": self.user_id,
                    "message_id": button.message_id,
                    "data": button.callback_data,
                },
            )
            if res:
                task = asyncio.create_task(self._show_answer(http, res["callback_query_id"]))
                self._tasks.add(task)  # keep a reference so the task isn't collected mid-run
                task.add_done_callback(self._tasks.discard)
            return res is not None
        self.say("! this button does nothing in the sandbox")
        return False

    async def _show_answer(self, http: aiohttp.ClientSession, query_id: str) -> None:
        for _ in range(20):
            await asyncio.sleep(0.25)
            try:
                async with http.get(
                    self.url + "/sandbox/callback_answers", params={"query_id": query_id}
                ) as resp:
                    answers = await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue  # the receiver reports an outage
            if answers:
                if answers[0].get("text"):
                    kind = "alert" if answers[0].get("show_alert") else "toast"
                    self.say(f"bot ({kind}): {answers[0]['text']}")
                return

    async def send_text(self, http: aiohttp.ClientSession, text: str) -> bool:
        res = await self._post(
            http,
            "/sandbox/messages",
            {
                "user_id": self.user_id,
                "text": text,
                "first_name": self.first_name,
                "language_code": self.language_code,
            },
        )
        return res is not None

    async def send_file(self, http: aiohttp.ClientSession, kind: str, args: str) -> bool:
        try:
            parts = shlex.split(args)
        except ValueError:
            parts = args.split()
        if not parts:
            self.say(f"usage: /{kind} PATH [caption]")
            return False
        path = Path(parts[0])
        try:
            data = await asyncio.to_thread(lambda: path.expanduser().read_bytes())
        except OSError as exc:
            self.say(f"! can't read {path}: {exc.strerror}")
            return False
        body: dict[str, Any] = {
            "user_id": self.user_id,
            "content_b64": base64.b64encode(data).decode(),
        }
        if len(parts) > 1:
            body["caption"] = " ".join(parts[1:])
        if kind == "doc":
            body["file_name"] = path.name
            body["mime_type"] = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        path_ = "/sandbox/photos" if kind == "photo" else "/sandbox/documents"
        return await self._post(http, path_, body) is not None

    async def handle(self, http: aiohttp.ClientSession, line: str) -> bool:
        """Process one input line; False means quit."""
        line = line.strip()
        if not line:
            return True
        if line == "/quit":
            return False
        self.changed.clear()
        if line.startswith("!") and line[1:].isdigit():
            sent = await self.press(http, int(line[1:]))
        elif line.startswith("/photo ") or line == "/photo":
            sent = await self.send_file(http, "photo", line[len("/photo") :])
        elif line.startswith("/doc ") or line == "/doc":
            sent = await self.send_file(http, "doc", line[len("/doc") :])
        else:
            sent = await self.send_text(http, line)
        if sent and self.piped:
            # Scripts expect `!N` to refer to the reply to the previous line.
            await self.settle(REPLY_TIMEOUT)
        return True

    def _start_reader(self, queue: asyncio.Queue[str | None]) -> None:
        loop = asyncio.get_running_loop()

        def pump() -> None:
            # A daemon thread: a blocked readline must never keep the process alive.
            while True:
                try:
                    line = self.stdin.readline()
                except (OSError, ValueError):
                    line = ""
                with contextlib.suppress(RuntimeError):  # loop closed: we are exiting
                    loop.call_soon_threadsafe(queue.put_nowait, line or None)
                if not line:
                    return

        threading.Thread(target=pump, name="sandbox-chat-stdin", daemon=True).start()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            # Start after what the bot already said, so a reconnect doesn't replay history.
            # (Also the first contact: an unreachable sandbox ends the chat here, in chat().)
            existing = await self._poll(http, 0)
            self.seq = max((e["seq"] for e in existing), default=0)
            await self._register(http)
            self.say(BANNER.format(url=self.url, uid=self.user_id, name=self.first_name))
            if existing:
                # The last few, so that a chat opened again can press the buttons it left.
                self.say(f"(the last {min(EARLIER, len(existing))} of {len(existing)} before)")
                for entry in existing[-EARLIER:]:
                    self._show(entry)
            receiver = asyncio.create_task(self.receive(http))
            queue: asyncio.Queue[str | None] = asyncio.Queue()
            self._start_reader(queue)
            try:
                while True:
                    line = await queue.get()
                    if line is None:
                        await self.settle(EOF_GRACE)  # let piped scripts see the last replies
                        break
                    if not await self.handle(http, line):
                        break
            finally:
                for task in (receiver, *self._tasks):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


async def chat(
    base_url: str,
    user_id: int,
    *,
    first_name: str = "You",
    language_code: str = "en",
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> None:
    client = ChatClient(
        base_url,
        user_id,
        first_name,
        language_code,
        stdin if stdin is not None else sys.stdin,
        stdout if stdout is not None else sys.stdout,
    )
    try:
        await client.run()
    except aiohttp.ClientConnectorError as exc:
        client.say(f"! can't reach the sandbox at {base_url}: {exc.os_error}")


def run_chat(base_url: str, user_id: int, **kw: Any) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(chat(base_url, user_id, **kw))
