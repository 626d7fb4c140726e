"""In-memory world of the sandbox: users, chats, messages, updates, files, limits, faults.

Everything runs on one event loop, so no locking; waiters use :class:`Notifier`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.persist import Store

# Calls that count towards flood limits and that faults hit by default.
SENDING_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
    }
)
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024  # Bot API getFile limit
# Sending calls remembered for GET /sandbox/sends (benchmarks); older ones are dropped.
SEND_LOG_MAX = 200_000


@dataclass
class SandboxConfig:
    bot_rate_per_sec: int = 30  # global per-bot limit over a sliding 1 s window
    private_chat_burst: int = 5  # per private chat, sliding 1 s window
    group_chat_per_min: int = 20  # per group chat (chat_id < 0), sliding 60 s window
    flood_limits: bool = True


class ApiError(Exception):
    """A Bot API error reply: {"ok": false, "error_code", "description", "parameters"?}."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(text: str) -> ApiError:
    return ApiError(400, f"Bad Request: {text}")


def too_many(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


BLOCKED = "Forbidden: bot was blocked by the user"


class Notifier:
    """Wake-all signal; waiters re-check their predicate (no lost wake-ups on one loop)."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, within)
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if self._event is None:
                self._event = asyncio.Event()
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True


@dataclass
class User:
    id: int
    first_name: str = "User"
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    blocked: bool = False  # user blocked the bot

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data


@dataclass
class Chat:
    id: int
    type: str  # private | group | supergroup
    title: str | None = None
    user: User | None = None

    def to_api(self) -> dict[str, Any]:
        if self.user is not None:
            data: dict[str, Any] = {
                "id": self.id,
                "type": "private",
                "first_name": self.user.first_name,
            }
            if self.user.last_name:
                data["last_name"] = self.user.last_name
            if self.user.username:
                data["username"] = self.user.username
            return data
        return {"id": self.id, "type": self.type, "title": self.title or f"Group {self.id}"}


@dataclass
class FileRec:
    file_id: str
    file_unique_id: str
    kind: str  # photo | document
    data: bytes
    file_path: str
    file_size: int
    file_name: str | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0
    sizes: list[str] = field(default_factory=list)  # photo: file_ids of all sizes, small->large

    def photo_size(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "width": self.width,
            "height": self.height,
            "file_size": self.file_size,
        }

    def document(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.file_size,
        }
        if self.file_name:
            data["file_name"] = self.file_name
        if self.mime_type:
            data["mime_type"] = self.mime_type
        return data


@dataclass
class StoredMessage:
    chat_id: int
    message_id: int
    payload: dict[str, Any]  # wire-format Message
    from_bot: bool
    method: str = ""
    seq: int = 0
    parse_mode: str | None = None
    raw_markup: Any = None  # any keyboard kind; Message.reply_markup only echoes inline ones
    edited: bool = False
    deleted: bool = False
    source: str | None = None  # text/caption exactly as the bot sent it (e.g. with HTML tags)

    def log_entry(self) -> dict[str, Any]:
        p = self.payload
        photo = p.get("photo")
        doc = p.get("document")
        return {
            "seq": self.seq,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "method": self.method,
            "text": p.get("text"),
            "caption": p.get("caption"),
            "entities": p.get("entities") or p.get("caption_entities"),
            "source": self.source,
            "parse_mode": self.parse_mode,
            "reply_markup": self.raw_markup,
            "photo": photo[-1]["file_id"] if photo else None,
            "document": doc["file_id"] if doc else None,
            "media_group_id": p.get("media_group_id"),
            "reply_to_message_id": (p.get("reply_to_message") or {}).get("message_id"),
            "edited": self.edited,
            "deleted": self.deleted,
            "date": p.get("date"),
        }


@dataclass
class Fault:
    kind: str  # 429 | 5xx | 403 | drop | latency
    method: str | None = None  # None: every sending method
    chat_id: int | None = None
    count: int = 1
    retry_after: int = 1
    status: int = 500
    delay: float = 0.0

    def matches(self, method: str, chat_id: Any) -> bool:
        if self.method is None:
            if method not in SENDING_METHODS:
                return False
        elif self.method.lower() != method.lower():
            return False
        return self.chat_id is None or str(self.chat_id) == str(chat_id)


class FloodControl:
    """Sliding-window limits; rejected calls are never recorded."""

    def __init__(self) -> None:
        self.bot: deque[float] = deque()
        self.chats: dict[int, deque[float]] = {}
        self.recent: deque[float] = deque()  # for the busiest-1s-window statistic
        self.max_window = 0

    @staticmethod
    def _free_in(window: deque[float], now: float, span: float, limit: int) -> float | None:
        while window and window[0] <= now - span:
            window.popleft()
        if len(window) < limit:
            return None
        # The call may go through once enough old sends age out of the window.
        return window[len(window) - limit] + span - now

    def check(self, config: SandboxConfig, chat_id: int | None, now: float) -> int | None:
        waits = [self._free_in(self.bot, now, 1.0, config.bot_rate_per_sec)]
        if chat_id is not None:
            window = self.chats.setdefault(chat_id, deque())
            if chat_id < 0:
                waits.append(self._free_in(window, now, 60.0, config.group_chat_per_min))
            else:
                waits.append(self._free_in(window, now, 1.0, config.private_chat_burst))
        worst = max((w for w in waits if w is not None), default=None)
        if worst is None:
            return None
        return max(1, math.ceil(worst))

    def record(self, chat_id: int | None, now: float) -> None:
        self.bot.append(now)
        if chat_id is not None:
            self.chats.setdefault(chat_id, deque()).append(now)
        self.recent.append(now)
        while self.recent and self.recent[0] <= now - 1.0:
            self.recent.popleft()
        self.max_window = max(self.max_window, len(self.recent))


# Minimal JPEG: SOI, JFIF APP0, SOF0 (so sizes can be read back), EOI. Not decodable pixels,
# but it has the real magic bytes and dimensions, which is all the sandbox inspects.
def fake_jpeg(width: int = 800, height: int = 600) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    sof += b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof + secrets.token_bytes(64) + b"\xff\xd9"


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG/PNG/GIF/WEBP, or None if it is not a recognised image."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return 512, 512
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            (seg_len,) = struct.unpack(">H", data[i + 2 : i + 4])
            i += 2 + int(seg_len)
        return 800, 600  # JPEG without a readable SOF: still an image
    return None


class State:
    """The sandbox's world; with a ``store`` it is loaded from and written to disk."""

    def __init__(self, config: SandboxConfig | None = None, store: Store | None = None) -> None:
        self.initial_config = replace(config) if config else SandboxConfig()
        # Update ids stay monotonic across resets (and restarts, with a store) so a running
        # poller's offset stays valid and the bot's per-update dedupe keys never collide.
        self.last_update_id = 0
        self.updates_changed = Notifier()
        self.chats_changed = Notifier()
        self.disk = store  # not "store": State.store() stores a message
        self._clear()
        if store is not None:
            store.load(self)
            self._recount()
            self.changed("meta", "generation", self.generation)
            store.flush()

    def changed(self, kind: str, key: Any, obj: Any) -> None:
        """Note an object to write at the next flush (None: delete it); no-op in memory."""
        if self.disk is not None:
            self.disk.mark(kind, key, obj)

    def flush(self) -> None:
        if self.disk is not None:
            self.disk.flush()

    def reset(self) -> None:
        """Forget everything but the update id counter, on disk too."""
        self._clear()
        if self.disk is not None:
            self.disk.clear()
            self.changed("meta", "generation", self.generation)

    def _recount(self) -> None:
        """Counters that follow from loaded messages: per-chat message ids and ``seq``."""
        last_seq = 0
        for chat_id, msgs in self.messages.items():
            self._message_ids[chat_id] = itertools.count(max(msgs) + 1)
            last_seq = max(last_seq, *(m.seq for m in msgs.values()))
        self._seq = itertools.count(last_seq + 1)

    def _clear(self) -> None:
        # A new generation tells clients (sandbox/chat.py) that seq numbering started over.
        self.generation = secrets.token_hex(8)
        self.config = replace(self.initial_config)
        self.users: dict[int, User] = {}
        self.chats: dict[int, Chat] = {}
        self.messages: dict[int, dict[int, StoredMessage]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._seq = itertools.count(1)
        self.updates: list[dict[str, Any]] = []
        self.confirmed_offset = 0
        self.poll_generation = 0  # a newer getUpdates terminates an older one (409)
        self.files: dict[str, FileRec] = {}
        self.files_by_path: dict[str, FileRec] = {}
        self.last_file_no = 0
        self.callback_queries: dict[str, dict[str, Any]] = {}
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.webhook: dict[str, Any] | None = None
        self.webhook_last_error: tuple[int, str] | None = None
        self.faults: list[Fault] = []
        self.reset_stats()
        self.updates_changed.notify()
        self.chats_changed.notify()

    # users and chats
    def upsert_user(self, user_id: int, **fields: Any) -> User:
        user = self.users.get(user_id)
        if user is None:
            user = User(id=user_id)
            self.users[user_id] = user
            self.chats[user_id] = Chat(id=user_id, type="private", user=user)
            self.changed("chat", user_id, self.chats[user_id])
        for key, value in fields.items():
            if value is not None and hasattr(user, key):
                setattr(user, key, value)
        self.changed("user", user_id, user)  # callers may still change it (blocked)
        return user

    def upsert_group(self, chat_id: int, title: str | None, chat_type: str) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            chat = Chat(id=chat_id, type=chat_type, title=title)
            self.chats[chat_id] = chat
        elif title:
            chat.title = title
        self.changed("chat", chat_id, chat)
        return chat

    # messages
    def next_message_id(self, chat_id: int) -> int:
        # One counter per chat shared by both sides, like Telegram's private chats.
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def store(self, msg: StoredMessage) -> StoredMessage:
        msg.seq = next(self._seq)
        self.messages.setdefault(msg.chat_id, {})[msg.message_id] = msg
        self._message_changed(msg)
        if msg.from_bot:
            self.chats_changed.notify()
        return msg

    def touch(self, msg: StoredMessage) -> None:
        """Bump seq after an edit/delete so control-API pollers see the message again."""
        msg.seq = next(self._seq)
        self._message_changed(msg)
        self.chats_changed.notify()

    def _message_changed(self, msg: StoredMessage) -> None:
        self.changed("message", f"{msg.chat_id}:{msg.message_id}", msg)

    def get_message(self, chat_id: int, message_id: int) -> StoredMessage | None:
        return self.messages.get(chat_id, {}).get(message_id)

    def bot_log(self, chat_id: int, after: int) -> list[dict[str, Any]]:
        msgs = [m for m in self.messages.get(chat_id, {}).values() if m.from_bot and m.seq > after]
        return [m.log_entry() for m in sorted(msgs, key=lambda m: m.seq)]

    # updates
    def push_update(self, body: dict[str, Any]) -> dict[str, Any]:
        self.last_update_id += 1
        update = {"update_id": self.last_update_id, **body}
        self.updates.append(update)
        self.changed("update", self.last_update_id, update)
        self.changed("meta", "last_update_id", self.last_update_id)
        self.updates_changed.notify()
        return update

    def confirm(self, offset: int) -> None:
        """Forget updates below ``offset`` (getUpdates offset semantics)."""
        before = self.confirmed_offset
        if offset < 0:
            keep = -offset
            dropped = self.updates[:-keep] if keep < len(self.updates) else []
            if dropped:
                self.confirmed_offset = max(self.confirmed_offset, dropped[-1]["update_id"] + 1)
            self.updates = self.updates[len(dropped) :]
        elif offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            self.confirmed_offset = max(self.confirmed_offset, offset)
        if self.confirmed_offset != before:
            # Pending updates are those from confirmed_offset on: the store drops the rest.
            self.changed("meta", "confirmed_offset", self.confirmed_offset)

    # files
    def add_file(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        file_size: int | None = None,
        width: int = 0,
        height: int = 0,
    ) -> FileRec:
        self.last_file_no = n = self.last_file_no + 1
        self.changed("meta", "last_file_no", n)
        prefix = "AgAC" if kind == "photo" else "BQAC"
        ext = (file_name or "").rsplit(".", 1)[-1] if file_name and "." in file_name else ""
        if kind == "photo":
            ext = "jpg"
        folder = "photos" if kind == "photo" else "documents"
        rec = FileRec(
            file_id=f"{prefix}{secrets.token_urlsafe(24)}",
            file_unique_id=f"AQAD{secrets.token_urlsafe(8)}",
            kind=kind,
            data=data,
            file_path=f"{folder}/file_{n}{'.' + ext if ext else ''}",
            file_size=file_size if file_size is not None else len(data),
            file_name=file_name,
            mime_type=mime_type,
            width=width,
            height=height,
        )
        self.files[rec.file_id] = rec
        self.files_by_path[rec.file_path] = rec
        self.changed("file", rec.file_id, rec)  # written at flush, with sizes set below
        return rec

    def add_photo(self, data: bytes, file_size: int | None = None) -> list[FileRec]:
        """A photo as Telegram stores it: several sizes, each with its own file_id."""
        w, h = image_size(data) or (800, 600)
        scale = min(1.0, 90 / max(w, h, 1))
        small = self.add_file(
            "photo", data, width=max(1, int(w * scale)), height=max(1, int(h * scale))
        )
        big = self.add_file("photo", data, file_size=file_size, width=w, height=h)
        small.sizes = big.sizes = [small.file_id, big.file_id]
        return [small, big]

    def photo_sizes(self, rec: FileRec) -> list[dict[str, Any]]:
        ids = rec.sizes or [rec.file_id]
        return [self.files[i].photo_size() for i in ids if i in self.files]

    # faults, flood, stats
    def take_fault(self, method: str, chat_id: Any) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, chat_id):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def reset_stats(self) -> None:
        """Forget the counters and flood windows; users, chats and messages stay."""
        self.flood = FloodControl()
        self.sent_total = 0
        self.sent_by_method: dict[str, int] = {}
        self.rejected_429 = 0
        # New bot messages (not edits) per chat: who got nothing, who got one too many.
        self.messages_per_chat: dict[int, int] = {}
        self.first_send_at: float | None = None  # wall clock (Unix time) of accepted sends
        self.last_send_at: float | None = None
        # (Unix time, chat_id, method or None when unknown, accepted) of every sending call.
        self.send_log: deque[tuple[float, int | None, str | None, bool]] = deque(
            maxlen=SEND_LOG_MAX
        )
        self.send_log_dropped = 0

    def _log_send(self, chat_id: int | None, method: str | None, accepted: bool) -> float:
        now = time.time()
        if len(self.send_log) == self.send_log.maxlen:
            self.send_log_dropped += 1
        self.send_log.append((now, chat_id, method, accepted))
        return now

    def check_flood(self, chat_id: int | None) -> None:
        if not self.config.flood_limits:
            return
        retry = self.flood.check(self.config, chat_id, time.monotonic())
        if retry is not None:
            self.rejected_429 += 1
            self._log_send(chat_id, None, accepted=False)
            raise too_many(retry)

    def record_send(self, method: str, chat_id: int | None) -> None:
        self.flood.record(chat_id, time.monotonic())
        self.sent_total += 1
        self.sent_by_method[method] = self.sent_by_method.get(method, 0) + 1
        now = self._log_send(chat_id, method, accepted=True)
        if self.first_send_at is None:
            self.first_send_at = now
        self.last_send_at = now
        if chat_id is not None and method.startswith("send"):
            self.messages_per_chat[chat_id] = self.messages_per_chat.get(chat_id, 0) + 1

    def sends(self) -> dict[str, Any]:
        return {
            "sends": [
                {"t": t, "chat_id": chat_id, "method": method, "accepted": accepted}
                for t, chat_id, method, accepted in self.send_log
            ],
            "dropped": self.send_log_dropped,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "sent_total": self.sent_total,
            "sent_by_method": dict(self.sent_by_method),
            "rejected_429": self.rejected_429,
            "max_sends_in_1s_window": self.flood.max_window,
            "chats_sent_to": len(self.messages_per_chat),
            "duplicate_sends": sum(n - 1 for n in self.messages_per_chat.values()),
            "first_send_at": self.first_send_at,
            "last_send_at": self.last_send_at,
            "updates_pending": len(self.updates),
            "confirmed_offset": self.confirmed_offset,
            "webhook_url": self.webhook["url"] if self.webhook else "",
            "generation": self.generation,
            "persistent": self.disk is not None,
            "config": asdict(self.config),
        }
