"""Command handlers of the request desk. Each runs inside run_command's transaction: it
authorizes the actor from the database, applies the domain rules and writes replies."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from core import clock, limits
from core.callbacks import ListCb, ListKind, safe_fragment
from core.commands import (
    AddComment,
    ChangePriority,
    CreateRequest,
    FindRequests,
    ListStaff,
    RateRequest,
    SetRole,
    ShowAssignees,
    ShowMine,
    ShowMyRequests,
    ShowQueue,
    ShowRequest,
    TransitionRequest,
)
from core.domain import (
    Action,
    EventAction,
    QueueOnly,
    Refused,
    Status,
    can_change_priority,
    can_comment,
    can_rate,
    can_view,
    decide,
)
from core.menu import chat_command_menu, main_menu
from core.roles import Role
from core.settings import get_settings
from core.texts import Markup, t
from db import requests as q
from db.areas import staff_for_place, unsubscribe_all
from db.models import Attachment, Comment, Request, RoleChange, User
from workers.desk import render
from workers.kit import Ctx, inline, require_admin, require_staff, viewer_for
from workers.kit.context import attachment_messages
from workers.outbox import Messages, Replies, html

# The latest role changes under the first page of /staff.
ROLE_CHANGES_SHOWN = 5

# --- Creating and viewing ---------------------------------------------------------------------


def create_request(session: Session, command: CreateRequest, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    request = Request(
        author_id=ctx.actor.id,
        title=command.title,
        description=command.description,
        location=command.location,
        priority=command.priority.value,
        status=Status.NEW.value,
        attachments=[Attachment(**a.model_dump()) for a in command.attachments],
    )
    session.add(request)
    session.flush()
    ctx.record(request, EventAction.CREATED, to_status=Status.NEW.value)
    ctx.reply("created", id=request.id)
    files = attachment_messages(request.attachments)

    def notice(lang: str) -> Messages:
        text = t(
            "notify.new",
            lang,
            id=request.id,
            priority=render.priority_text(request.priority, lang),
            location=request.location,
            title=request.title,
            description=render.cut(request.description, 1000),
        )
        keyboard = render.new_request_keyboard(request.id, lang)
        return [*files, ("sendMessage", html(text, reply_markup=keyboard))]

    ctx.tell_many(staff_for_place(session, request.location), notice, about=request)


def show_my_requests(session: Session, command: ShowMyRequests, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    page = q.my_requests(session, ctx.actor.id, command.page, render.PAGE_SIZE, edge=command.edge)
    if page.total == 0:
        ctx.reply("my.empty")
        return
    text = t("my.title", ctx.lang, page=page.number + 1, pages=page.pages)
    keyboard = render.list_keyboard(page, ctx.lang, kind=ListKind.MY)
    ctx.show_list(text, keyboard, command.edit_message_id)


def show_mine(session: Session, command: ShowMine, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_staff(ctx):
        return
    page = q.assigned_to(session, ctx.actor.id, command.page, render.PAGE_SIZE, edge=command.edge)
    if page.total == 0:
        ctx.reply("mine.empty")
        return
    text = t("mine.title", ctx.lang, page=page.number + 1, pages=page.pages)
    keyboard = render.list_keyboard(page, ctx.lang, kind=ListKind.MINE)
    ctx.show_list(text, keyboard, command.edit_message_id)


def show_queue(session: Session, command: ShowQueue, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_staff(ctx):
        return
    # Every page, the first included, filters by the place exactly as the page buttons carry
    # it (cut to fit, without ":"), or pages would count and list different requests.
    loc = safe_fragment((command.location or "").replace(":", ""), render.QUEUE_FILTER_BYTES)
    page = q.open_queue(
        session,
        command.status,
        loc,
        command.page,
        render.PAGE_SIZE,
        at=clock.now(),
        sla=get_settings().sla_by_priority(),
        priority=command.priority.value if command.priority else None,
        unassigned=command.only is QueueOnly.UNASSIGNED,
        overdue=command.only is QueueOnly.OVERDUE,
        edge=command.edge,
    )
    status = command.status.value if command.status else ""
    pri = command.priority.value if command.priority else ""
    only = command.only.value if command.only else ""
    what = render.queue_filter_text(status, loc, ctx.lang, pri=pri, only=only)
    if page.total == 0 and not command.edit_message_id:
        ctx.reply("queue.empty", filter=what)
        return
    text = t("queue.title", ctx.lang, filter=what, page=page.number + 1, pages=page.pages)
    keyboard = render.list_keyboard(
        page, ctx.lang, kind=ListKind.QUEUE, status=status, loc=loc, pri=pri, only=only
    )
    ctx.show_list(text, keyboard, command.edit_message_id)


def find_requests(session: Session, command: FindRequests, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_staff(ctx):
        return
    # Every page looks for what the page buttons carry back (cut to fit, without ":").
    query = safe_fragment(command.query, render.FIND_QUERY_BYTES)
    if not query:
        ctx.reply("find.usage")
        return
    page = q.search_requests(session, query, command.page, render.PAGE_SIZE, edge=command.edge)
    if page.total == 0 and not command.edit_message_id:
        ctx.reply("find.empty", query=query)
        return
    pages = {"page": page.number + 1, "pages": page.pages}
    text = t("find.title", ctx.lang, query=query, total=page.total, **pages)
    keyboard = render.list_keyboard(page, ctx.lang, kind=ListKind.FIND, loc=query)
    ctx.show_list(text, keyboard, command.edit_message_id)


def show_request(session: Session, command: ShowRequest, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    request = q.request_by_id(session, command.request_id)
    if request is None or not can_view(ctx.viewer(request)):
        # A resident learns nothing about requests that are not theirs, not even that they exist.
        key = (
            "refused.not_found"
            if request is None and ctx.role is not Role.RESIDENT
            else ("refused.not_allowed")
        )
        ctx.reply(key, id=command.request_id)
        return
    ctx.send_attachments(ctx.actor, request.attachments)
    _send_card(ctx, request)


def _send_card(ctx: Ctx, request: Request) -> None:
    comments = q.comments_of(ctx.session, request.id)
    events = q.events_of(ctx.session, request.id)
    users = q.users_by_id(
        ctx.session,
        {request.author_id, request.assignee_id}
        | {c.author_id for c in comments}
        | {e.actor_id for e in events}
        | {render.named_user(e) for e in events},
    )
    late = q.overdue_by(request, events, clock.now(), get_settings().sla_by_priority())
    text = render.card_text(request, ctx.lang, users, comments, events, overdue_by=late)
    keyboard = render.card_keyboard(request, ctx.viewer(request), ctx.lang, _reopen_open(request))
    ctx.reply_text(text, reply_markup=keyboard)


# --- Changing ---------------------------------------------------------------------------------


def _reopen_open(request: Request) -> bool:
    if request.done_at is None:
        return False
    window = timedelta(days=get_settings().reopen_window_days)
    return clock.now() - clock.as_utc(request.done_at) <= window


def _locked(ctx: Ctx, request_id: int) -> Request | None:
    request = q.lock_request(ctx.session, request_id)
    if request is None or (ctx.role is Role.RESIDENT and request.author_id != ctx.actor.id):
        key = "refused.not_allowed" if ctx.role is Role.RESIDENT else "refused.not_found"
        ctx.reply(key, id=request_id)
        return None
    return request


def transition_request(session: Session, command: TransitionRequest, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    request = _locked(ctx, command.request_id)
    if request is None:
        return
    assignee: User | None = None
    if command.action is Action.ASSIGN:
        assignee = q.user_by_telegram_id(session, command.assignee or 0)
        if ctx.role is Role.ADMIN and (assignee is None or assignee.role == Role.RESIDENT):
            ctx.reply(
                "refused.not_staff", user="?" if command.assignee is None else command.assignee
            )
            return
    old_status = Status(request.status)
    try:
        new_status = decide(
            old_status,
            command.action,
            ctx.viewer(request),
            note=command.note,
            reopen_window_open=_reopen_open(request),
        )
    except Refused as refusal:
        _explain_refusal(ctx, request, command.action, refusal.reason)
        return

    old_assignee_id = request.assignee_id
    request.status = new_status.value
    now = clock.now()
    if command.action is Action.ACCEPT:
        request.assignee_id, request.accepted_at = ctx.actor.id, now
    elif command.action is Action.ASSIGN and assignee is not None:
        request.assignee_id = assignee.id
        request.accepted_at = request.accepted_at or now
    elif command.action is Action.START:
        request.started_at = now
    elif command.action is Action.DONE:
        request.done_at = now
    elif command.action in (Action.REJECT, Action.CANCEL):
        request.closed_at = now
    elif command.action is Action.REOPEN:
        request.done_at, request.rating = None, None
    note = (command.note or "").strip() or None
    ctx.record(
        request,
        EventAction.of(command.action),
        from_status=old_status.value,
        to_status=new_status.value,
        # An assignment's history names the assignee by internal id (never a Telegram id).
        note=str(assignee.id) if assignee is not None else note,
    )
    if command.action is Action.DONE and (note or command.file_id):
        session.add(
            Comment(
                request_id=request.id,
                author_id=ctx.actor.id,
                text=note or "",
                file_id=command.file_id,
            )
        )
    session.flush()
    _notify_transition(ctx, request, command, old_assignee_id, note)
    ctx.reply("done.action", id=request.id, status=render.status_text(request.status, ctx.lang))
    _send_card(ctx, request)


def _explain_refusal(ctx: Ctx, request: Request, action: Action, reason: str) -> None:
    if action is Action.ACCEPT and request.assignee_id and reason.startswith("refused.status."):
        taker = ctx.session.get(User, request.assignee_id)
        ctx.reply("refused.taken", id=request.id, assignee=render.name_of(taker, ctx.lang))
        return
    ctx.reply(reason, id=request.id, days=get_settings().reopen_window_days)


def _notify_transition(
    ctx: Ctx,
    request: Request,
    command: TransitionRequest,
    old_assignee_id: int | None,
    note: str | None,
) -> None:
    users = q.users_by_id(ctx.session, {request.author_id, request.assignee_id, old_assignee_id})
    author = users.get(request.author_id or 0)
    actor_name = render.name_of(ctx.actor, author.language if author else ctx.lang)
    if author is not None:
        lang = author.language
        by = t("notify.status.by", lang, actor=actor_name)
        if command.action is Action.REJECT:
            text = t(
                "notify.rejected",
                lang,
                id=request.id,
                title=request.title,
                by=by,
                reason=note or "",
            )
        else:
            text = t(
                "notify.status",
                lang,
                id=request.id,
                title=request.title,
                by=by,
                status=render.status_text(request.status, lang),
            )
            if command.action is Action.DONE and note:
                text = Markup(text + "\n" + t("notify.done_note", lang, note=note))
        extra = {}
        if command.action is Action.DONE:
            text = Markup(text + "\n\n" + t("rate.ask", lang, id=request.id))
            extra["reply_markup"] = inline([render.rating_row(request.id)])
        if (
            ctx.tell(author, text, about=request, **extra)
            and command.action is Action.DONE
            and command.file_id
        ):
            assert author.telegram_id is not None
            ctx.replies.send(
                author.telegram_id, "sendPhoto", {"photo": command.file_id}, user_id=author.id
            )
    assignee = users.get(request.assignee_id or 0)
    if command.action is Action.ASSIGN and assignee is not None:
        lang = assignee.language
        ctx.tell(
            assignee,
            t(
                "notify.assigned",
                lang,
                id=request.id,
                title=request.title,
                by=t("notify.status.by", lang, actor=render.name_of(ctx.actor, lang)),
            ),
            reply_markup=render.card_keyboard(
                request, viewer_for(assignee, request), lang, _reopen_open(request)
            ),
        )
        previous = users.get(old_assignee_id or 0)
        if previous is not None and previous.id != assignee.id:
            ctx.tell(
                previous,
                t(
                    "notify.unassigned",
                    previous.language,
                    id=request.id,
                    title=request.title,
                    assignee=render.name_of(assignee, previous.language),
                ),
            )
    elif command.action in (Action.CANCEL, Action.REOPEN) and assignee is not None:
        lang = assignee.language
        ctx.tell(
            assignee,
            t(
                "notify.status",
                lang,
                id=request.id,
                title=request.title,
                status=render.status_text(request.status, lang),
                by=t("notify.status.by", lang, actor=render.name_of(ctx.actor, lang)),
            ),
        )


def show_assignees(session: Session, command: ShowAssignees, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_admin(ctx):
        return
    if q.request_by_id(session, command.request_id) is None:
        ctx.reply("refused.not_found", id=command.request_id)
        return
    staff = q.staff_members(session)
    if not staff:
        ctx.reply("assign.nobody")
        return
    ctx.reply(
        "assign.choose",
        id=command.request_id,
        reply_markup=render.assignee_keyboard(command.request_id, staff, ctx.lang),
    )


def add_comment(session: Session, command: AddComment, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    request = _locked(ctx, command.request_id)
    if request is None:
        return
    viewer = ctx.viewer(request)
    if not can_comment(Status(request.status), viewer):
        ctx.reply("refused.comment" if can_view(viewer) else "refused.not_allowed", id=request.id)
        return
    files = [Attachment(**a.model_dump()) for a in command.attachments]
    if files and len(request.attachments) + len(files) > limits.REQUEST_FILES_MAX:
        room = max(0, limits.REQUEST_FILES_MAX - len(request.attachments))
        ctx.reply("refused.files", id=request.id, max=limits.REQUEST_FILES_MAX, room=room)
        return
    request.attachments.extend(files)  # added to the request: its card shows them all
    session.add(
        Comment(
            request_id=request.id,
            author_id=ctx.actor.id,
            text=command.text,
            file_id=command.file_id,
        )
    )
    ctx.record(request, EventAction.COMMENT)

    def notice(lang: str) -> str:
        text = t(
            "notify.comment",
            lang,
            author=render.name_of(ctx.actor, lang),
            id=request.id,
            title=request.title,
            text=command.text,
        )
        if files:
            text = Markup(text + "\n" + t("notify.files", lang, count=len(files)))
        return text

    # Staff comments go to the author; the author's to the assignee, or while nobody is
    # assigned to the staff a new request there would reach (somebody must see it).
    if not viewer.is_author or request.assignee_id is not None:
        one = request.author_id if not viewer.is_author else request.assignee_id
        recipient = session.get(User, one) if one is not None else None
        if recipient is not None and ctx.tell(recipient, notice(recipient.language), about=request):
            ctx.send_attachments(recipient, files)
    else:
        album = attachment_messages(files)
        ctx.tell_many(
            staff_for_place(session, request.location),
            lambda lang: [("sendMessage", html(notice(lang))), *album],
            about=request,
        )
    if files:
        ctx.reply("done.files", id=request.id, count=len(files))
    else:
        ctx.reply("done.comment", id=request.id)


def change_priority(session: Session, command: ChangePriority, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    request = _locked(ctx, command.request_id)
    if request is None:
        return
    if not can_change_priority(Status(request.status), ctx.viewer(request)):
        ctx.reply("refused.not_allowed")
        return
    old = request.priority
    request.priority = command.priority.value
    ctx.record(request, EventAction.PRIORITY, from_status=old, to_status=request.priority)
    ctx.reply(
        "done.priority", id=request.id, priority=render.priority_text(request.priority, ctx.lang)
    )
    author = session.get(User, request.author_id) if request.author_id else None
    if author is not None and request.priority != old:
        ctx.tell(
            author,
            t(
                "notify.priority",
                author.language,
                id=request.id,
                title=request.title,
                priority=render.priority_text(request.priority, author.language),
            ),
            about=request,
        )


def rate_request(session: Session, command: RateRequest, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    request = _locked(ctx, command.request_id)
    if request is None:
        return
    rating_ok = 1 <= command.rating <= 5  # forged ratings never reach the SMALLINT column
    if not rating_ok or not can_rate(Status(request.status), ctx.viewer(request)) or request.rating:
        ctx.reply("refused.rate")
        return
    request.rating = command.rating
    ctx.record(request, EventAction.RATED, note=str(command.rating))
    ctx.reply("rate.thanks", id=request.id, rating=command.rating)


# --- Admin ------------------------------------------------------------------------------------


def set_role(session: Session, command: SetRole, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_admin(ctx):
        return
    found = q.find_users(session, command.target)
    if not found:
        ctx.reply("grant.unknown", target=render.cut(command.target, 64))  # echoed: kept short
        return
    (target,) = found
    role = command.role or Role.RESIDENT
    changed = target.role != role.value
    if changed:
        session.add(
            RoleChange(
                user_id=target.id,
                changed_by=ctx.actor.id,
                from_role=target.role,
                to_role=role.value,
            )
        )
    target.role = role.value
    if role is Role.RESIDENT:  # a resident gets no staff notices, whatever they subscribed
        unsubscribe_all(session, target.id)
    lang = target.language
    ctx.reply(
        "grant.done", user=render.name_of(target, ctx.lang), role=t(f"role.{role.value}", ctx.lang)
    )
    ctx.tell(
        target,
        t("notify.role", lang, role=t(f"role.{role.value}", lang)),
        reply_markup=main_menu(role, lang),
    )
    if changed and target.telegram_id is not None:
        # Their "/" menu follows the role (the keyboard came with the notice above).
        replies.send(
            target.telegram_id,
            *chat_command_menu(role, lang, target.telegram_id),
            user_id=target.id,
        )


def list_staff(session: Session, command: ListStaff, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_admin(ctx):
        return
    page = q.staff_page(session, command.page, render.STAFF_PAGE_SIZE, edge=command.edge)
    if page.total == 0:
        ctx.reply("staff.empty")
        return
    text = render.staff_text(page.rows, q.open_counts(session), ctx.lang, page.number, page.pages)
    changes = q.latest_role_changes(session, ROLE_CHANGES_SHOWN) if page.number == 0 else []
    if changes:
        text = Markup(text + "\n\n" + render.role_changes_text(changes, ctx.lang))
    current = ListCb(kind=ListKind.STAFF, page=page.number)
    nav = render.nav_row(ctx.lang, current=current, page=page)
    ctx.show_list(text, inline([nav]) if nav else None, command.edit_message_id)
