"""Bot API surface: ``/bot{token}/{method}`` and ``/file/bot{token}/{path}``."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from sandbox.html import HtmlParseError, parse_html
from sandbox.state import (
    BLOCKED,
    MAX_DOWNLOAD_SIZE,
    ApiError,
    Chat,
    FileRec,
    State,
    StoredMessage,
    bad_request,
    image_size,
    too_many,
)

TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]+$")
STATE_KEY: web.AppKey[State] = web.AppKey("sandbox_state", State)
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
PHOTO_UPLOAD_LIMIT = 10 * 1024 * 1024
DOCUMENT_UPLOAD_LIMIT = 50 * 1024 * 1024
WRONG_FILE = "wrong file identifier/HTTP URL specified"
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_STATUSES = {s.value for s in HTTPStatus}


@dataclass
class Upload:
    data: bytes
    filename: str | None
    content_type: str | None


@dataclass
class Call:
    """One Bot API invocation with loosely-typed params (JSON, urlencoded or multipart)."""

    state: State
    bot_id: int
    method: str
    params: dict[str, Any]
    files: dict[str, Upload] = field(default_factory=dict)

    def get_raw(self, name: str) -> Any:
        return self.params.get(name)

    def get_str(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else str(value)

    def get_int(self, name: str) -> int | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str) -> bool:
        value = self.params.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def get_obj(self, name: str) -> Any:
        """Nested objects arrive as JSON strings in form bodies."""
        value = self.params.get(name)
        if isinstance(value, str):
            if value == "":
                return None
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
        return value


Handler = Callable[[Call], Awaitable[Any]]
METHODS: dict[str, tuple[str, Handler]] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name.lower()] = (name, fn)  # Telegram method names are case-insensitive
        return fn

    return register


def bot_user(bot_id: int) -> dict[str, Any]:
    return {
        "id": bot_id,
        "is_bot": True,
        "first_name": "Sandbox Bot",
        "username": f"sandbox_{bot_id}_bot",
    }


# ---------------------------------------------------------------- helpers


def target_chat(call: Call, *, check_blocked: bool = True) -> Chat:
    raw = call.get_raw("chat_id")
    if raw is None or raw == "":
        raise bad_request("chat_id is empty")
    try:
        chat_id = int(raw)
    except (TypeError, ValueError):
        raise bad_request("chat not found") from None  # @usernames never resolve here
    chat = call.state.chats.get(chat_id)
    if chat is None:
        raise bad_request("chat not found")
    if check_blocked and chat.user is not None and chat.user.blocked:
        raise ApiError(403, BLOCKED)
    return chat


def format_text(
    call: Call, text: str | None, parse_mode: str | None, entities_key: str, *, caption: bool
) -> tuple[str, list[dict[str, Any]]]:
    """Apply parse_mode and Telegram's length limits; returns (visible text, entities)."""
    text = text or ""
    entities: list[dict[str, Any]] = []
    mode = (parse_mode or "").lower()
    if mode == "html":
        try:
            parsed = parse_html(text)
        except HtmlParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        text, entities = parsed.text, parsed.entities
    elif mode in ("", "markdown", "markdownv2"):
        # Markdown is passed through unparsed: the sandbox only validates HTML strictly.
        entities = call.get_obj(entities_key) or []
    else:
        raise bad_request("unsupported parse_mode")
    if not caption and not text.strip():
        raise bad_request("message text is empty")
    if caption and len(text) > CAPTION_LIMIT:
        raise bad_request("message caption is too long")
    if not caption and len(text) > TEXT_LIMIT:
        raise bad_request("message is too long")
    return text, entities


def check_markup(call: Call) -> tuple[Any, dict[str, Any] | None]:
    """Validate reply_markup; returns (raw markup, inline markup to echo in Message)."""
    markup = call.get_obj("reply_markup")
    if markup is None:
        return None, None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request("can't parse inline keyboard button: InlineKeyboardButton expected")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise bad_request("can't parse inline keyboard button: Text is empty")
                data = button.get("callback_data")
                if data is not None and len(str(data).encode("utf-8")) > 64:
                    raise bad_request("BUTTON_DATA_INVALID")
        return markup, markup
    if "keyboard" in markup:
        for row in markup["keyboard"]:
            for button in row:
                text = button.get("text") if isinstance(button, dict) else button
                if not text:
                    raise bad_request("can't parse keyboard button: Text is empty")
    return markup, None


def now() -> int:
    return int(time.time())


def reply_to(call: Call, chat: Chat) -> dict[str, Any] | None:
    params = call.get_obj("reply_parameters")
    if not isinstance(params, dict):
        params = {}
    msg_id = params.get("message_id")
    if msg_id is None:
        msg_id = call.get_int("reply_to_message_id")
    if msg_id is None:
        return None
    target = call.state.get_message(chat.id, int(msg_id))
    if target is None or target.deleted:
        lenient = params.get("allow_sending_without_reply")
        if lenient or call.get_bool("allow_sending_without_reply"):
            return None
        raise bad_request("message to be replied not found")
    nested = dict(target.payload)
    nested.pop("reply_to_message", None)
    return nested


def new_bot_message(
    call: Call, chat: Chat, content: dict[str, Any], raw_markup: Any, inline: Any
) -> StoredMessage:
    payload: dict[str, Any] = {
        "message_id": call.state.next_message_id(chat.id),
        "from": bot_user(call.bot_id),
        "chat": chat.to_api(),
        "date": now(),
        **content,
    }
    replied = reply_to(call, chat)
    if replied is not None:
        payload["reply_to_message"] = replied
    if inline is not None:
        payload["reply_markup"] = inline
    msg = StoredMessage(
        chat_id=chat.id,
        message_id=payload["message_id"],
        payload=payload,
        from_bot=True,
        method=call.method,
        parse_mode=call.get_str("parse_mode"),
        raw_markup=raw_markup,
        source=call.get_str("text") if "text" in content else call.get_str("caption"),
    )
    return call.state.store(msg)


def store_upload(call: Call, upload: Upload, kind: str) -> FileRec:
    limit = PHOTO_UPLOAD_LIMIT if kind == "photo" else DOCUMENT_UPLOAD_LIMIT
    if len(upload.data) > limit:
        raise ApiError(413, "Request Entity Too Large")
    if kind == "photo":
        if image_size(upload.data) is None:
            raise bad_request("IMAGE_PROCESS_FAILED")
        return call.state.add_photo(upload.data)[-1]
    if not upload.data:
        raise bad_request("file must be non-empty")
    return call.state.add_file(
        "document",
        upload.data,
        file_name=upload.filename,
        mime_type=upload.content_type or "application/octet-stream",
    )


def resolve_file(call: Call, value: Any, field_name: str, kind: str) -> FileRec:
    """A file_id the sandbox knows, an ``attach://name`` part, or a part named like the field."""
    if value is None or value == "":
        upload = call.files.get(field_name)
        if upload is None:
            raise bad_request(f"there is no {kind} in the request")
        return store_upload(call, upload, kind)
    if not isinstance(value, str):
        raise bad_request(WRONG_FILE)
    if value.startswith("attach://"):
        upload = call.files.get(value[len("attach://") :])
        if upload is None:
            raise bad_request(WRONG_FILE)
        return store_upload(call, upload, kind)
    rec = call.state.files.get(value)
    if rec is None:
        raise bad_request(WRONG_FILE)  # includes HTTP URLs: the sandbox never fetches them
    if rec.kind != kind:
        raise bad_request(f"can't use file of type {rec.kind.title()} as {kind.title()}")
    return rec


def media_content(call: Call, rec: FileRec) -> dict[str, Any]:
    if rec.kind == "photo":
        return {"photo": call.state.photo_sizes(rec)}
    return {"document": rec.document()}


def find_own_message(call: Call, chat: Chat, action: str) -> StoredMessage:
    message_id = call.get_int("message_id")
    if call.get_raw("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")  # inline mode isn't simulated
    if message_id is None:
        raise bad_request("message identifier is not specified")
    msg = call.state.get_message(chat.id, message_id)
    if msg is None or msg.deleted:
        raise bad_request(f"message to {action} not found")
    if not msg.from_bot:
        raise bad_request(f"message can't be {action}ed")
    return msg


# ---------------------------------------------------------------- methods


@method("getMe")
async def get_me(call: Call) -> Any:
    return {
        **bot_user(call.bot_id),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


@method("logOut")
async def log_out(call: Call) -> Any:
    return True


@method("close")
async def close(call: Call) -> Any:
    return True


@method("getUpdates")
async def get_updates(call: Call) -> Any:
    state = call.state
    if state.webhook is not None:
        raise ApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
            "to delete the webhook first",
        )
    offset = call.get_int("offset") or 0
    limit = max(1, min(100, call.get_int("limit") or 100))
    timeout = max(0, call.get_int("timeout") or 0)
    state.confirm(offset)
    state.poll_generation += 1
    generation = state.poll_generation
    state.updates_changed.notify()  # terminates an older concurrent poll

    def ready() -> bool:
        return bool(state.updates) or state.poll_generation != generation

    await state.updates_changed.wait_for(ready, timeout)
    if state.poll_generation != generation:
        raise ApiError(
            409,
            "Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running",
        )
    if state.webhook is not None:
        return []
    return state.updates[:limit]


@method("setWebhook")
async def set_webhook(call: Call) -> Any:
    url = call.get_str("url") or ""
    if not url:
        return await delete_webhook(call)
    if not url.startswith(("http://", "https://")):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = call.get_str("secret_token")
    if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise bad_request("secret token contains unallowed characters")
    if call.get_bool("drop_pending_updates"):
        call.state.confirm(call.state.updates[-1]["update_id"] + 1 if call.state.updates else 0)
    call.state.webhook = {
        "url": url,
        "secret_token": secret,
        "bot_id": call.bot_id,
        "max_connections": call.get_int("max_connections") or 40,
        "allowed_updates": call.get_obj("allowed_updates"),
    }
    call.state.changed("meta", "webhook", call.state.webhook)
    call.state.webhook_last_error = None
    call.state.updates_changed.notify()
    return True


@method("deleteWebhook")
async def delete_webhook(call: Call) -> Any:
    if call.get_bool("drop_pending_updates") and call.state.updates:
        call.state.confirm(call.state.updates[-1]["update_id"] + 1)
    call.state.webhook = None
    call.state.changed("meta", "webhook", None)
    call.state.updates_changed.notify()
    return True


@method("getWebhookInfo")
async def get_webhook_info(call: Call) -> Any:
    hook = call.state.webhook
    info: dict[str, Any] = {
        "url": hook["url"] if hook else "",
        "has_custom_certificate": False,
        "pending_update_count": len(call.state.updates),
    }
    if hook:
        info["max_connections"] = hook["max_connections"]
        if hook["allowed_updates"]:
            info["allowed_updates"] = hook["allowed_updates"]
        if call.state.webhook_last_error:
            info["last_error_date"], info["last_error_message"] = call.state.webhook_last_error
    return info


@method("sendMessage")
async def send_message(call: Call) -> Any:
    chat = target_chat(call)
    text, entities = format_text(
        call, call.get_str("text"), call.get_str("parse_mode"), "entities", caption=False
    )
    raw_markup, inline = check_markup(call)
    call.state.check_flood(chat.id)
    content: dict[str, Any] = {"text": text}
    if entities:
        content["entities"] = entities
    msg = new_bot_message(call, chat, content, raw_markup, inline)
    call.state.record_send(call.method, chat.id)
    return msg.payload


async def _send_media(call: Call, kind: str) -> Any:
    chat = target_chat(call)
    caption, entities = format_text(
        call, call.get_str("caption"), call.get_str("parse_mode"), "caption_entities", caption=True
    )
    raw_markup, inline = check_markup(call)
    call.state.check_flood(chat.id)  # before storing the upload: a 429 must not leave a file
    rec = resolve_file(call, call.get_raw(kind), kind, kind)
    content = media_content(call, rec)
    if caption:
        content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
    msg = new_bot_message(call, chat, content, raw_markup, inline)
    call.state.record_send(call.method, chat.id)
    return msg.payload


@method("sendPhoto")
async def send_photo(call: Call) -> Any:
    return await _send_media(call, "photo")


@method("sendDocument")
async def send_document(call: Call) -> Any:
    return await _send_media(call, "document")


@method("sendMediaGroup")
async def send_media_group(call: Call) -> Any:
    chat = target_chat(call)
    media = call.get_obj("media")
    if not isinstance(media, list) or not 2 <= len(media) <= 10:
        raise bad_request("wrong number of messages in the album; must be between 2 and 10")
    prepared: list[tuple[dict[str, Any], str, list[dict[str, Any]]]] = []
    for item in media:
        if not isinstance(item, dict) or item.get("type") not in ("photo", "document"):
            raise bad_request("unsupported media type in the album")
        caption, entities = format_text(
            call, item.get("caption"), item.get("parse_mode"), "", caption=True
        )
        prepared.append((item, caption, entities))
    kinds = {item["type"] for item, _, _ in prepared}
    if len(kinds) > 1:
        raise bad_request("documents can't be mixed with other media types in the album")
    call.state.check_flood(chat.id)
    group_id = str(secrets.randbelow(10**18))
    results = []
    for item, caption, entities in prepared:
        rec = resolve_file(call, item.get("media"), "", item["type"])
        content = {**media_content(call, rec), "media_group_id": group_id}
        if caption:
            content["caption"] = caption
            if entities:
                content["caption_entities"] = entities
        msg = new_bot_message(call, chat, content, None, None)
        msg.parse_mode = item.get("parse_mode")
        msg.source = item.get("caption")
        results.append(msg.payload)
    call.state.record_send(call.method, chat.id)
    return results


def _apply_edit(call: Call, msg: StoredMessage, content: dict[str, Any]) -> Any:
    raw_markup, inline = check_markup(call)
    old = msg.payload
    same_content = all(old.get(k) == v for k, v in content.items())
    if same_content and old.get("reply_markup") == inline:
        raise bad_request(NOT_MODIFIED)
    call.state.check_flood(msg.chat_id)
    for key, value in content.items():
        if value is None:
            old.pop(key, None)
        else:
            old[key] = value
    # Editing without reply_markup removes the inline keyboard, as on Telegram.
    if inline is None:
        old.pop("reply_markup", None)
    else:
        old["reply_markup"] = inline
    old["edit_date"] = now()
    msg.raw_markup = raw_markup
    msg.edited = True
    if call.method != "editMessageReplyMarkup":
        msg.parse_mode = call.get_str("parse_mode")
        msg.source = call.get_str("text") if "text" in content else call.get_str("caption")
    call.state.touch(msg)
    call.state.record_send(call.method, msg.chat_id)
    return old


@method("editMessageText")
async def edit_message_text(call: Call) -> Any:
    chat = target_chat(call)
    msg = find_own_message(call, chat, "edit")
    text, entities = format_text(
        call, call.get_str("text"), call.get_str("parse_mode"), "entities", caption=False
    )
    if "text" not in msg.payload:
        raise bad_request("there is no text in the message to edit")
    return _apply_edit(call, msg, {"text": text, "entities": entities or None})


@method("editMessageCaption")
async def edit_message_caption(call: Call) -> Any:
    chat = target_chat(call)
    msg = find_own_message(call, chat, "edit")
    caption, entities = format_text(
        call, call.get_str("caption"), call.get_str("parse_mode"), "caption_entities", caption=True
    )
    if "text" in msg.payload:
        raise bad_request("there is no caption in the message to edit")
    return _apply_edit(
        call, msg, {"caption": caption or None, "caption_entities": entities or None}
    )


@method("editMessageReplyMarkup")
async def edit_message_reply_markup(call: Call) -> Any:
    chat = target_chat(call)
    msg = find_own_message(call, chat, "edit")
    return _apply_edit(call, msg, {})


@method("deleteMessage")
async def delete_message(call: Call) -> Any:
    chat = target_chat(call, check_blocked=False)
    message_id = call.get_int("message_id")
    msg = call.state.get_message(chat.id, message_id) if message_id is not None else None
    if msg is None or msg.deleted:
        raise bad_request("message to delete not found")
    msg.deleted = True
    call.state.touch(msg)
    return True


@method("sendChatAction")
async def send_chat_action(call: Call) -> Any:
    target_chat(call)
    if not call.get_str("action"):
        raise bad_request("action is empty")
    return True


@method("answerCallbackQuery")
async def answer_callback_query(call: Call) -> Any:
    query_id = call.get_str("callback_query_id") or ""
    query = call.state.callback_queries.get(query_id)
    if query is None or query["answered"]:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = call.get_str("text")
    if text and len(text) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    query["answered"] = True
    call.state.changed("callback", query_id, None)  # a forgotten id gets the same error
    call.state.callback_answers.append(
        {
            "query_id": query_id,
            "text": text,
            "show_alert": call.get_bool("show_alert"),
            "url": call.get_str("url"),
            "cache_time": call.get_int("cache_time") or 0,
            "date": now(),
        }
    )
    call.state.chats_changed.notify()
    return True


@method("getFile")
async def get_file(call: Call) -> Any:
    rec = call.state.files.get(call.get_str("file_id") or "")
    if rec is None:
        raise bad_request("invalid file_id")
    if rec.file_size > MAX_DOWNLOAD_SIZE:
        raise bad_request("file is too big")
    return {
        "file_id": rec.file_id,
        "file_unique_id": rec.file_unique_id,
        "file_size": rec.file_size,
        "file_path": rec.file_path,
    }


def _commands_key(call: Call) -> str:
    scope = call.get_obj("scope") or {"type": "default"}
    return json.dumps([scope, call.get_str("language_code") or ""], sort_keys=True)


@method("setMyCommands")
async def set_my_commands(call: Call) -> Any:
    commands = call.get_obj("commands")
    if not isinstance(commands, list) or len(commands) > 100:
        raise bad_request("commands must be an array of at most 100 BotCommand")
    for cmd in commands:
        if not isinstance(cmd, dict) or not BOT_COMMAND_RE.match(str(cmd.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(cmd.get("description", ""))) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
    key = _commands_key(call)
    call.state.commands[key] = [
        {"command": c["command"], "description": c["description"]} for c in commands
    ]
    call.state.changed("commands", key, call.state.commands[key])
    return True


@method("getMyCommands")
async def get_my_commands(call: Call) -> Any:
    return call.state.commands.get(_commands_key(call), [])


@method("deleteMyCommands")
async def delete_my_commands(call: Call) -> Any:
    key = _commands_key(call)
    call.state.commands.pop(key, None)
    call.state.changed("commands", key, None)
    return True


# ---------------------------------------------------------------- HTTP plumbing


def api_response(result: Any = None, error: ApiError | None = None) -> web.Response:
    if error is not None:
        return web.json_response(error.to_json(), status=error.code)
    return web.json_response({"ok": True, "result": result})


async def read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, Upload] = {}
    if request.method != "POST" or not request.body_exists:
        return params, files
    ctype = request.content_type
    if ctype == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("can't parse JSON object") from None
        if isinstance(body, dict):
            params.update(body)
        return params, files
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, str):
                params[key] = value
            elif isinstance(value, (bytes, bytearray)):
                params[key] = bytes(value).decode("utf-8", "replace")
            else:  # FileField
                files[key] = Upload(value.file.read(), value.filename, value.content_type)
    return params, files


async def execute(
    state: State, bot_id: int, name: str, params: dict[str, Any], files: dict[str, Upload]
) -> Any:
    entry = METHODS.get(name.lower())
    if entry is None:
        raise ApiError(404, "Not Found")
    canonical, handler = entry
    return await handler(Call(state, bot_id, canonical, params, files))


async def handle_method(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    match = TOKEN_RE.match(request.match_info["token"])
    if match is None:
        return api_response(error=ApiError(401, "Unauthorized"))
    entry = METHODS.get(request.match_info["method"].lower())
    if entry is None:
        return api_response(error=ApiError(404, "Not Found"))
    try:
        params, files = await read_params(request)
    except ApiError as exc:
        return api_response(error=exc)
    fault = state.take_fault(entry[0], params.get("chat_id"))
    if fault is not None:
        if fault.kind == "latency":
            await asyncio.sleep(fault.delay)
        elif fault.kind == "drop":
            # Abort the connection mid-request: the client sees a disconnect, no response.
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        elif fault.kind == "429":
            state.rejected_429 += 1
            return api_response(error=too_many(fault.retry_after))
        elif fault.kind == "429bare":
            state.rejected_429 += 1
            return api_response(error=ApiError(429, "Too Many Requests"))
        elif fault.kind == "html5xx":
            html_page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(status=502, text=html_page, content_type="text/html")
        elif fault.kind == "403":
            return api_response(error=ApiError(403, BLOCKED))
        elif fault.kind == "5xx":
            phrase = HTTPStatus(fault.status).phrase if fault.status in _STATUSES else "Error"
            return api_response(error=ApiError(fault.status, phrase))
    try:
        result = await execute(state, int(match.group(1)), entry[0], params, files)
    except ApiError as exc:
        return api_response(error=exc)
    return api_response(result)


async def handle_file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not TOKEN_RE.match(request.match_info["token"]):
        raise web.HTTPUnauthorized()
    rec = state.files_by_path.get(request.match_info["path"])
    if rec is None:
        raise web.HTTPNotFound()
    return web.Response(body=rec.data, content_type=rec.mime_type or "application/octet-stream")


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", r"/bot{token}/{method}", handle_method)
    app.router.add_get(r"/file/bot{token}/{path:.+}", handle_file)
