"""Control API for tests and the terminal chat (JSON over HTTP under ``/sandbox/``)."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from dataclasses import asdict, fields
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sandbox.botapi import STATE_KEY
from sandbox.state import Chat, Fault, State, StoredMessage, User, fake_jpeg, image_size

M = TypeVar("M", bound=BaseModel)
# Changes when seq numbering starts over (a reset, or a restart without a state dir).
GENERATION_HEADER = "X-Sandbox-Generation"
_COMMAND_RE = re.compile(r"^/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?")


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UserIn(_In):
    id: int = Field(gt=0)
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class _FromUser(_In):
    user_id: int = Field(gt=0)
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    chat_id: int | None = None  # a group chat (< 0); default: the user's private chat
    chat_title: str | None = None
    reply_to_message_id: int | None = None


class MessageIn(_FromUser):
    text: str


class PhotoIn(_FromUser):
    caption: str | None = None
    media_group_id: str | None = None
    file_size: int | None = None
    content_b64: str | None = None


class DocumentIn(PhotoIn):
    file_name: str = "document.bin"
    mime_type: str | None = None


class CallbackIn(_FromUser):
    message_id: int
    data: str


class FaultIn(_In):
    # 429bare: a 429 without retry_after; html5xx: a proxy's HTML error page, not JSON.
    kind: str = Field(pattern=r"^(429|429bare|5xx|html5xx|403|drop|latency)$")
    method: str | None = None
    chat_id: int | None = None
    count: int = Field(default=1, ge=1)
    retry_after: int = Field(default=1, ge=1)
    status: int = Field(default=500, ge=500, le=599)
    delay: float = Field(default=0.0, ge=0)


class ConfigIn(_In):
    bot_rate_per_sec: int | None = Field(default=None, ge=1)
    private_chat_burst: int | None = Field(default=None, ge=1)
    group_chat_per_min: int | None = Field(default=None, ge=1)
    flood_limits: bool | None = None


class ChatIn(_In):
    id: int = Field(lt=0)
    title: str | None = None
    type: str = Field(default="supergroup", pattern=r"^(group|supergroup)$")


def _state(request: web.Request) -> State:
    return request.app[STATE_KEY]


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        raw = await request.json() if request.body_exists else {}
        return model.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _sender(state: State, body: _FromUser) -> tuple[User, Chat]:
    user = state.upsert_user(
        body.user_id,
        first_name=body.first_name,
        last_name=body.last_name,
        username=body.username,
        language_code=body.language_code,
    )
    if body.chat_id is not None and body.chat_id < 0:
        return user, state.upsert_group(body.chat_id, body.chat_title, "supergroup")
    return user, state.chats[user.id]


def _user_message(state: State, body: _FromUser, content: dict[str, Any]) -> dict[str, Any]:
    user, chat = _sender(state, body)
    payload: dict[str, Any] = {
        "message_id": state.next_message_id(chat.id),
        "from": user.to_api(),
        "chat": chat.to_api(),
        "date": int(time.time()),
        **content,
    }
    if body.reply_to_message_id is not None:
        target = state.get_message(chat.id, body.reply_to_message_id)
        if target is not None:
            nested = dict(target.payload)
            nested.pop("reply_to_message", None)
            payload["reply_to_message"] = nested
    state.store(StoredMessage(chat.id, payload["message_id"], payload, from_bot=False))
    update = state.push_update({"message": payload})
    return {"update_id": update["update_id"], "message_id": payload["message_id"]}


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode(content_b64: str | None) -> bytes | None:
    if content_b64 is None:
        return None
    try:
        return base64.b64decode(content_b64, validate=True)
    except (binascii.Error, ValueError):
        raise web.HTTPBadRequest(text="content_b64 is not valid base64") from None


_USERS = TypeAdapter(list[UserIn])


async def post_user(request: web.Request) -> web.Response:
    """One user ({...}), or many at once ([{...}, ...]: answered with a list)."""
    state = _state(request)
    try:
        raw = await request.json() if request.body_exists else {}
        many = isinstance(raw, list)
        bodies = _USERS.validate_python(raw) if many else [UserIn.model_validate(raw)]
    except (ValueError, ValidationError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    users = [state.upsert_user(b.id, **b.model_dump(exclude={"id"})).to_api() for b in bodies]
    return web.json_response(users if many else users[0])


async def post_chat(request: web.Request) -> web.Response:
    body = await _body(request, ChatIn)
    chat = _state(request).upsert_group(body.id, body.title, body.type)
    return web.json_response(chat.to_api())


async def post_message(request: web.Request) -> web.Response:
    body = await _body(request, MessageIn)
    content: dict[str, Any] = {"text": body.text}
    m = _COMMAND_RE.match(body.text)
    if m:
        # Telegram marks a leading /command, which aiogram's Command filter relies on.
        content["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(m[0])}]
    return web.json_response(_user_message(_state(request), body, content))


async def post_photo(request: web.Request) -> web.Response:
    body = await _body(request, PhotoIn)
    state = _state(request)
    data = _decode(body.content_b64)
    if data is None:
        data = fake_jpeg()
    elif image_size(data) is None:
        raise web.HTTPBadRequest(text="content is not a JPEG/PNG/GIF/WEBP image")
    sizes = state.add_photo(data, file_size=body.file_size)
    content: dict[str, Any] = {"photo": state.photo_sizes(sizes[-1])}
    if body.caption:
        content["caption"] = body.caption
    if body.media_group_id:
        content["media_group_id"] = body.media_group_id
    result = _user_message(state, body, content)
    return web.json_response({**result, "file_id": sizes[-1].file_id})


async def post_document(request: web.Request) -> web.Response:
    body = await _body(request, DocumentIn)
    state = _state(request)
    data = _decode(body.content_b64)
    if data is None:
        data = secrets.token_bytes(min(body.file_size or 256, 4096))
    rec = state.add_file(
        "document",
        data,
        file_name=body.file_name,
        mime_type=body.mime_type or "application/octet-stream",
        file_size=body.file_size,
    )
    content: dict[str, Any] = {"document": rec.document()}
    if body.caption:
        content["caption"] = body.caption
    if body.media_group_id:
        content["media_group_id"] = body.media_group_id
    result = _user_message(state, body, content)
    return web.json_response({**result, "file_id": rec.file_id})


async def post_callback(request: web.Request) -> web.Response:
    body = await _body(request, CallbackIn)
    state = _state(request)
    user, chat = _sender(state, body)
    target = state.get_message(chat.id, body.message_id)
    message: dict[str, Any]
    if target is None or target.deleted:
        # Telegram sends InaccessibleMessage (date 0) for messages it can't show.
        message = {"chat": chat.to_api(), "message_id": body.message_id, "date": 0}
    else:
        message = target.payload
    query_id = str(secrets.randbelow(10**18) + 10**18)
    state.callback_queries[query_id] = {"user_id": user.id, "answered": False}
    state.changed("callback", query_id, state.callback_queries[query_id])
    update = state.push_update(
        {
            "callback_query": {
                "id": query_id,
                "from": user.to_api(),
                "message": message,
                "chat_instance": str(abs(chat.id) * 7919 + 1),
                "data": body.data,
            }
        }
    )
    return web.json_response({"update_id": update["update_id"], "callback_query_id": query_id})


async def get_chat_messages(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        chat_id = int(request.match_info["chat_id"])
        after = int(request.query.get("after", "0"))
        wait = min(float(request.query.get("wait", "0")), 300.0)
    except ValueError:
        raise web.HTTPBadRequest(text="chat_id/after/wait must be numbers") from None
    # A client that saw another generation (numbering started over) must hear so at once.
    seen = request.query.get("generation", state.generation)
    await state.chats_changed.wait_for(
        lambda: bool(state.bot_log(chat_id, after)) or state.generation != seen, wait
    )
    return web.json_response(
        state.bot_log(chat_id, after), headers={GENERATION_HEADER: state.generation}
    )


async def get_callback_answers(request: web.Request) -> web.Response:
    answers = _state(request).callback_answers
    query_id = request.query.get("query_id")
    if query_id:
        answers = [a for a in answers if a["query_id"] == query_id]
    return web.json_response(answers)


async def _set_blocked(request: web.Request, blocked: bool) -> web.Response:
    state = _state(request)
    try:
        user_id = int(request.match_info["user_id"])
    except ValueError:
        raise web.HTTPBadRequest(text="user id must be a number") from None
    user = state.upsert_user(user_id)
    user.blocked = blocked
    return web.json_response({**user.to_api(), "blocked": blocked})


async def block_user(request: web.Request) -> web.Response:
    return await _set_blocked(request, True)


async def unblock_user(request: web.Request) -> web.Response:
    return await _set_blocked(request, False)


async def post_fault(request: web.Request) -> web.Response:
    body = await _body(request, FaultIn)
    fault = Fault(**body.model_dump())
    _state(request).faults.append(fault)
    return web.json_response(asdict(fault))


async def delete_faults(request: web.Request) -> web.Response:
    _state(request).faults.clear()
    return web.json_response({"ok": True})


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response([asdict(f) for f in _state(request).faults])


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(_state(request).stats())


async def post_stats_reset(request: web.Request) -> web.Response:
    """Zero the counters and flood windows, keeping users, chats and messages (benchmarks)."""
    _state(request).reset_stats()
    return web.json_response({"ok": True})


async def get_sends(request: web.Request) -> web.Response:
    """Every sending call since the last reset: time, chat, method, accepted or 429."""
    return web.json_response(_state(request).sends())


async def post_config(request: web.Request) -> web.Response:
    body = await _body(request, ConfigIn)
    state = _state(request)
    for f in fields(state.config):
        value = getattr(body, f.name)
        if value is not None:
            setattr(state.config, f.name, value)
    return web.json_response(asdict(state.config))


async def post_reset(request: web.Request) -> web.Response:
    _state(request).reset()
    return web.json_response({"ok": True})


async def get_updates_debug(request: web.Request) -> web.Response:
    return web.json_response(_state(request).updates)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/sandbox/users", post_user)
    r.add_post("/sandbox/users/{user_id}/block", block_user)
    r.add_post("/sandbox/users/{user_id}/unblock", unblock_user)
    r.add_post("/sandbox/chats", post_chat)
    r.add_post("/sandbox/messages", post_message)
    r.add_post("/sandbox/photos", post_photo)
    r.add_post("/sandbox/documents", post_document)
    r.add_post("/sandbox/callbacks", post_callback)
    r.add_get("/sandbox/chats/{chat_id}/messages", get_chat_messages)
    r.add_get("/sandbox/callback_answers", get_callback_answers)
    r.add_post("/sandbox/faults", post_fault)
    r.add_get("/sandbox/faults", get_faults)
    r.add_delete("/sandbox/faults", delete_faults)
    r.add_get("/sandbox/stats", get_stats)
    r.add_post("/sandbox/stats/reset", post_stats_reset)
    r.add_get("/sandbox/sends", get_sends)
    r.add_post("/sandbox/config", post_config)
    r.add_post("/sandbox/reset", post_reset)
    r.add_get("/sandbox/updates", get_updates_debug)
