"""Acting on requests: lists, cards, the action buttons and the short dialogs some need
(a reason to reject, a comment, a closing note). Every decision is the worker's; this router
only turns presses and answers into commands."""

from __future__ import annotations

from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.actors import Envelope, language_of
from bot.files import accept_file
from bot.middlewares import with_envelopes
from core import commands as c
from core import limits
from core.callbacks import CardVerb, ListCb, ListKind, RequestCb
from core.domain import Action, Priority, QueueOnly, Status
from core.roles import Role
from core.texts import all_translations, t
from core.user_input import DB_ID_LIMIT, TELEGRAM_ID_LIMIT, normalize, parse_id, parse_user_target


class Ask(StatesGroup):
    reason = State()
    comment = State()
    closing = State()
    files = State()  # a comment's files arriving (an album is one message per file)


# Domain actions that apply at once; the others need more input first (a reason, a closing
# note, whom to assign).
_DIRECT = frozenset({Action.ACCEPT, Action.START, Action.CANCEL, Action.REOPEN})
_PRIORITIES = frozenset(p.value for p in Priority)
_RATINGS = frozenset(str(n) for n in range(1, 6))
_PROMPTS: dict[Action | CardVerb, tuple[State, str]] = {
    Action.REJECT: (Ask.reason, "ask.reason"),
    CardVerb.COMMENT: (Ask.comment, "ask.comment"),
    Action.DONE: (Ask.closing, "ask.done"),
}


async def my_requests(message: Message, envelope: Envelope) -> None:
    if message.from_user:
        await envelope.send(c.ShowMyRequests)


async def mine(message: Message, envelope: Envelope) -> None:
    if message.from_user:
        await envelope.send(c.ShowMine)


async def queue(message: Message, envelope: Envelope, command: CommandObject | None = None) -> None:
    if message.from_user:
        location = normalize(command.args or "")[: limits.LOCATION_MAX] if command else ""
        await envelope.send(c.ShowQueue, location=location or None)


async def find(message: Message, envelope: Envelope, command: CommandObject | None = None) -> None:
    """`/find <words>`: staff only (the worker checks); without words, how to use it."""
    query = normalize(command.args or "")[: limits.SEARCH_MAX] if command else ""
    if not query:
        await message.answer(t("find.usage", envelope.lang))
        return
    await envelope.send(c.FindRequests, query=query)


async def open_request(
    message: Message, envelope: Envelope, command: CommandObject | None = None
) -> None:
    """`/r 42` or `#42`: the card, if the worker finds the user may see it."""
    text = (command.args or "") if command else (message.text or "")
    request_id = parse_id(normalize(text).removeprefix("#").strip(), DB_ID_LIMIT)
    if request_id is None:
        await message.answer(t("open.usage", envelope.lang))
        return
    await envelope.send(c.ShowRequest, request_id=request_id)


def _known_filters(data: ListCb) -> bool:
    """A forged or outdated button names a filter we do not have: it is stale, not an error."""
    return (
        data.status in ("", *Status)
        and data.pri in ("", *Priority)
        and data.only in ("", *QueueOnly)
    )


async def list_page(callback: CallbackQuery, callback_data: ListCb, envelope: Envelope) -> None:
    message = callback.message
    if message is None:
        await callback.answer(t("stale", envelope.lang))
        return
    at = {"page": callback_data.page, "edge": callback_data.edge}
    edit = message.message_id
    if callback_data.kind is ListKind.MY:
        await envelope.send(c.ShowMyRequests, **at, edit_message_id=edit)
    elif callback_data.kind is ListKind.MINE:
        await envelope.send(c.ShowMine, **at, edit_message_id=edit)
    elif callback_data.kind is ListKind.QUEUE and _known_filters(callback_data):
        await envelope.send(
            c.ShowQueue,
            **at,
            status=Status(callback_data.status) if callback_data.status else None,
            location=callback_data.loc or None,
            priority=Priority(callback_data.pri) if callback_data.pri else None,
            only=QueueOnly(callback_data.only) if callback_data.only else None,
            edit_message_id=edit,
        )
    elif callback_data.kind is ListKind.FIND and callback_data.loc:
        await envelope.send(c.FindRequests, query=callback_data.loc, **at, edit_message_id=edit)
    elif callback_data.kind is ListKind.STAFF:
        await envelope.send(c.ListStaff, **at, edit_message_id=edit)
    else:
        await callback.answer(t("stale", envelope.lang))
        return
    await callback.answer()


def _priority_keyboard(request_id: int, language: str | None) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t(f"priority.{p.value}", language),
                    callback_data=RequestCb(
                        action=CardVerb.SET_PRIORITY, id=request_id, arg=p.value
                    ).pack(),
                )
                for p in Priority
            ]
        ]
    )


def _skip_keyboard(request_id: int, language: str | None) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("btn.skip", language),
                    callback_data=RequestCb(action=CardVerb.SKIP_NOTE, id=request_id).pack(),
                )
            ]
        ]
    )


async def request_action(
    callback: CallbackQuery, callback_data: RequestCb, envelope: Envelope, state: FSMContext
) -> None:
    """One handler for every request button; unknown or malformed data is refused here (an id
    out of range never unpacks: the fallback router answers that press), and anything
    well-formed is still checked by the worker (a modified client can forge it)."""
    message = callback.message
    language = envelope.lang
    if message is None:
        await callback.answer(t("stale", language))
        return
    rid, action, arg = callback_data.id, callback_data.action, callback_data.arg
    if action is CardVerb.OPEN:
        await envelope.send(c.ShowRequest, request_id=rid)
    elif action in _DIRECT:
        await envelope.send(c.TransitionRequest, request_id=rid, action=action)
    elif action is Action.ASSIGN:  # whom to: the staff to choose from
        await envelope.send(c.ShowAssignees, request_id=rid)
    elif action is CardVerb.ASSIGN_TO and (assignee := parse_id(arg, TELEGRAM_ID_LIMIT)):
        await envelope.send(
            c.TransitionRequest, request_id=rid, action=Action.ASSIGN, assignee=assignee
        )
    elif action is CardVerb.SKIP_NOTE and await state.get_state() == Ask.closing.state:
        await state.clear()
        await envelope.send(c.TransitionRequest, request_id=rid, action=Action.DONE)
    elif action is CardVerb.FILES_DONE and await _files_for(state, rid):
        await _send_files(envelope, state, rid, "")
    elif action is CardVerb.SET_PRIORITY and arg in _PRIORITIES:
        await envelope.send(c.ChangePriority, request_id=rid, priority=Priority(arg))
    elif action is CardVerb.RATE and arg in _RATINGS:
        await envelope.send(c.RateRequest, request_id=rid, rating=int(arg))
    elif action is CardVerb.PRIORITY_MENU:
        await message.answer(
            t("ask.priority", language, id=rid), reply_markup=_priority_keyboard(rid, language)
        )
    elif action in _PROMPTS:
        next_state, prompt = _PROMPTS[action]
        await state.set_state(next_state)
        await state.update_data(request_id=rid)
        markup = _skip_keyboard(rid, language) if action is Action.DONE else None
        await message.answer(t(prompt, language, id=rid), reply_markup=markup)
    else:
        await callback.answer(t("stale", language))
        return
    await callback.answer()


async def _files_for(state: FSMContext, request_id: int) -> bool:
    """Whether the files being collected are for this request (a Done of an older prompt is
    stale)."""
    data = await state.get_data()
    return await state.get_state() == Ask.files.state and data.get("request_id") == request_id


async def _send_files(envelope: Envelope, state: FSMContext, request_id: int, text: str) -> None:
    """The collected files, with the words (typed, or the files' captions), as one comment."""
    data = await state.get_data()
    words = text or normalize(data.get("caption", ""))[: limits.COMMENT_MAX]
    await envelope.send(
        c.AddComment, request_id=request_id, text=words, attachments=data.get("files", [])
    )
    await state.clear()


async def comment_file(message: Message, envelope: Envelope, state: FSMContext) -> None:
    """A photo or document while a comment is asked for: it is collected (an album arrives as
    one message per file) until Done or words end the comment."""
    language = envelope.lang
    data = await state.get_data()
    files: list[dict[str, Any]] = list(data.get("files", []))
    attachment, error = accept_file(message, len(files), language)
    caption = " ".join(x for x in (data.get("caption", ""), message.caption or "") if x)
    rid = int(data["request_id"])
    if attachment is not None:
        files.append(attachment)
    await state.set_state(Ask.files)
    first_of_album = message.media_group_id is None or message.media_group_id != data.get("album")
    await state.update_data(files=files, caption=caption, album=message.media_group_id, error=error)
    if error and (first_of_album or error != data.get("error")):
        await message.answer(error)
    elif first_of_album:
        done = RequestCb(action=CardVerb.FILES_DONE, id=rid).pack()
        await message.answer(
            t("ask.files_got", language, id=rid),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[
                    [InlineKeyboardButton(text=t("btn.files_done", language), callback_data=done)]
                ]
            ),
        )


async def answer_prompt(message: Message, envelope: Envelope, state: FSMContext) -> None:
    """The text (or, when closing, a photo) asked for by a reject/comment/done button."""
    language = envelope.lang
    current = await state.get_state()
    text = normalize(message.text or message.caption or "")
    photo = message.photo[-1].file_id if message.photo and current == Ask.closing.state else None
    # A reject reason and a closing note are both the transition's note.
    words = (Ask.comment.state, Ask.files.state)
    limit = limits.COMMENT_MAX if current in words else limits.REASON_MAX
    if not text and photo is None:
        await message.answer(t("ask.text_expected", language, max=limit))
        return
    if len(text) > limit:
        await message.answer(t("ask.too_long", language, length=len(text), max=limit))
        return
    if message.from_user is None:
        return
    rid = int((await state.get_data())["request_id"])
    if current == Ask.files.state:  # words after files: the comment they go with
        await _send_files(envelope, state, rid, text)
        return
    if current == Ask.reason.state:
        await envelope.send(c.TransitionRequest, request_id=rid, action=Action.REJECT, note=text)
    elif current == Ask.comment.state:
        await envelope.send(c.AddComment, request_id=rid, text=text)
    else:
        await envelope.send(
            c.TransitionRequest,
            request_id=rid,
            action=Action.DONE,
            note=text or None,
            file_id=photo,
        )
    await state.clear()


async def cancel_prompt(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(t("action.cancelled", language_of(message)))


async def grant(message: Message, command: CommandObject, envelope: Envelope) -> None:
    parts = normalize(command.args or "").split()
    language = envelope.lang
    if message.from_user is None:
        return
    if command.command == "grant":
        if len(parts) != 2 or parts[1].lower() not in (Role.STAFF, Role.ADMIN):
            await message.answer(t("grant.usage", language))
            return
        role: Role | None = Role(parts[1].lower())
    else:
        if len(parts) != 1:
            await message.answer(t("revoke.usage", language))
            return
        role = None
    target = parse_user_target(parts[0])
    if target is None:
        await message.answer(t("input.bad_user", language, target=parts[0][:64]))
        return
    await envelope.send(c.SetRole, target=target, role=role)


async def staff(message: Message, envelope: Envelope) -> None:
    if message.from_user:
        await envelope.send(c.ListStaff)


def create_router() -> Router:
    router = with_envelopes(Router(name=__name__))
    prompts = StateFilter(Ask.reason, Ask.comment, Ask.closing, Ask.files)
    router.message.register(cancel_prompt, prompts, Command("cancel"))
    router.message.register(comment_file, StateFilter(Ask.comment, Ask.files), F.photo | F.document)
    router.message.register(answer_prompt, prompts, ~F.text.startswith("/"))
    router.message.register(my_requests, Command("my"))
    router.message.register(my_requests, F.text.in_(all_translations("menu.my")))
    router.message.register(queue, Command("queue"))
    router.message.register(open_request, Command("r"))
    router.message.register(mine, Command("mine"))
    router.message.register(find, Command("find"))
    # Outside any dialog only: "#2 is broken" may well be a title.
    router.message.register(open_request, StateFilter(None), F.text.regexp(r"^\s*#\d+\s*$"))
    router.message.register(queue, F.text.in_(all_translations("menu.queue")))
    router.message.register(grant, Command("grant", "revoke"))
    router.message.register(staff, Command("staff"))
    router.callback_query.register(list_page, ListCb.filter())
    router.callback_query.register(request_action, RequestCb.filter())
    return router
