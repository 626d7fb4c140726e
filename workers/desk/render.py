"""Messages and inline keyboards of the desk, as Bot API JSON ready for the outbox."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core import limits
from core.callbacks import CardVerb, ListCb, ListKind, RequestCb
from core.domain import (
    Action,
    EventAction,
    Priority,
    QueueOnly,
    Status,
    Viewer,
    available_actions,
    can_change_priority,
    can_comment,
    can_rate,
)
from core.settings import get_settings
from core.texts import Markup, duration, escape, t
from db.models import Comment, Request, RequestEvent, RoleChange, User
from db.requests import Page
from workers.kit.keyboards import Keyboard, button, inline

PAGE_SIZE = 5
# 20 lines of at most ~100 characters: a /staff page stays far under Telegram's 4096.
STAFF_PAGE_SIZE = 20
STAFF_NAME = 64
# The free text page buttons carry, cut to fit ListCb's 64 bytes beside the rest at its
# longest: any page number, a ◀ edge of a 10-digit id and, for the /queue place filter, the
# longest status, priority and "only" filter; for the /find query, none of those.
QUEUE_FILTER_BYTES = 16
FIND_QUERY_BYTES = 28
CARD_COMMENTS = 5
CARD_EVENTS = 8
SNIPPET = 300  # characters of a comment or note shown in a card
MIN_DESCRIPTION = 50


def cut(text: str, limit: int) -> str:
    """Plain text cut to `limit` characters, marked with an ellipsis (escape afterwards)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def visible_length(markup: str) -> int:
    """Characters Telegram counts for an HTML text of ours: tags dropped, entities as one."""
    return len(html.unescape(re.sub(r"<[^>]*>", "", markup)))


def when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    zone = ZoneInfo(get_settings().timezone)
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment.astimezone(zone).strftime("%d.%m %H:%M")


def name_of(user: User | None, lang: str) -> str:
    if user is not None and user.erased_at is not None:
        return t("erased_user", lang)
    if user is None or user.telegram_id is None:
        return t("someone", lang)
    if user.username:
        return "@" + user.username
    return " ".join(p for p in (user.first_name, user.last_name) if p) or str(user.telegram_id)


def status_text(status: str, lang: str) -> Markup:
    return t(f"status.{status}", lang)


def priority_text(priority: str, lang: str) -> Markup:
    return t(f"priority.{priority}", lang)


# --- Cards -----------------------------------------------------------------------------------


def card_text(
    request: Request,
    lang: str,
    users: dict[int, User],
    comments: Sequence[Comment] = (),
    events: Sequence[RequestEvent] = (),
    overdue_by: timedelta | None = None,
) -> Markup:
    """A request's card; trimmed (oldest history first, then the description) to fit."""
    head = t(
        "card",
        lang,
        id=request.id,
        title=request.title,
        status=status_text(request.status, lang),
        priority=priority_text(request.priority, lang),
        location=request.location,
        author=name_of(users.get(request.author_id or 0), lang),
        assignee=name_of(users.get(request.assignee_id), lang)
        if request.assignee_id
        else Markup(t("nobody", lang)),
        created=when(request.created_at),
    )
    extra: list[str] = []
    if overdue_by is not None:
        extra.append(t("card.overdue", lang, late=duration(overdue_by, lang)))
    if request.rating:
        extra.append(t("card.rating", lang, stars="★" * request.rating))
    if request.attachments:
        extra.append(t("card.attachments", lang, count=len(request.attachments)))
    comment_lines = [
        t(
            "card.comment",
            lang,
            author=name_of(users.get(c.author_id or 0), lang),
            when=when(c.created_at),
            text=cut(c.text, SNIPPET) or "📎",  # files without words
        )
        for c in comments
    ]
    event_lines = [
        t(
            "card.event",
            lang,
            when=when(e.created_at),
            actor=name_of(users.get(e.actor_id or 0), lang),
            what=describe_event(e, lang, users),
        )
        for e in events
    ]
    description = request.description
    shown_comments, shown_events = (
        min(len(comment_lines), CARD_COMMENTS),
        min(len(event_lines), CARD_EVENTS),
    )
    while True:
        text = _assemble(
            head, extra, description, lang, comment_lines, shown_comments, event_lines, shown_events
        )
        # Telegram counts visible characters: escaped user text (`&amp;`) is longer as HTML.
        excess = visible_length(text) - limits.MESSAGE_MAX
        if excess <= 0:
            return text
        if shown_events > 1:
            shown_events -= 1
        elif shown_comments > 1:
            shown_comments -= 1
        elif len(description) > MIN_DESCRIPTION:
            description = cut(description, max(MIN_DESCRIPTION, len(description) - excess - 1))
        else:
            # Unreachable with today's field limits; guarantees the loop ends regardless.
            return text


def _assemble(
    head: str,
    extra: list[str],
    description: str,
    lang: str,
    comments: list[Markup],
    shown_comments: int,
    events: list[Markup],
    shown_events: int,
) -> Markup:
    parts = [head, *extra, t("card.description", lang, description=description)]
    for title, lines, shown in (
        ("card.comments", comments, shown_comments),
        ("card.history", events, shown_events),
    ):
        if lines:
            parts.append(t(title, lang))
            if shown < len(lines):
                parts.append(t("card.more", lang, count=len(lines) - shown))
            parts.extend(lines[len(lines) - shown :])
    return Markup("\n".join(parts))


# Events whose note is a user's internal id.
_NAMES_A_USER = (EventAction.ASSIGN, EventAction.UNDELIVERED)


def named_user(event: RequestEvent) -> int | None:
    """The user an event names: the assignee of an assignment, the recipient a notification did
    not reach (the note holds their internal id, never a Telegram id)."""
    if event.action in _NAMES_A_USER and event.note and event.note.isdigit():
        return int(event.note)
    return None


def describe_event(event: RequestEvent, lang: str, users: dict[int, User]) -> Markup:
    if event.action == EventAction.CREATED:
        return t("event.created", lang)
    if event.action == EventAction.PRIORITY:
        return t(
            "event.priority",
            lang,
            from_=priority_text(event.from_status or "normal", lang),
            to=priority_text(event.to_status or "normal", lang),
        )
    if event.action == EventAction.ESCALATED:
        return t(
            "event.escalated",
            lang,
            late=event.note or "",
            from_=priority_text(event.from_status or "normal", lang),
            to=priority_text(event.to_status or "normal", lang),
        )
    if event.action == EventAction.REPAIRED:
        return t("event.repaired", lang, what=event.note or "")
    if event.action == EventAction.RATED:
        return t("event.rated", lang, rating=event.note or "")
    if event.action == EventAction.COMMENT:
        return t("event.comment", lang)
    named = named_user(event)
    if named is not None:
        name = name_of(users.get(named), lang)
        if event.action == EventAction.UNDELIVERED:
            return t("event.undelivered", lang, name=name)
        return t("event.assigned", lang, assignee=name)
    what = t(
        "event.transition",
        lang,
        from_=status_text(event.from_status or "new", lang),
        to=status_text(event.to_status or "new", lang),
    )
    if event.note:
        what = Markup(f"{what}: {escape(cut(event.note, SNIPPET))}")
    return what


def card_keyboard(request: Request, viewer: Viewer, lang: str, reopen_open: bool) -> Keyboard:
    """The actions this viewer may take; the worker checks them again when pressed."""
    status = Status(request.status)
    actions = [
        a for a in available_actions(status, viewer) if a is not Action.REOPEN or reopen_open
    ]
    rows: list[list[dict[str, str]]] = []
    first = [
        button(t(f"btn.{a}", lang), RequestCb(action=a, id=request.id).pack())
        for a in actions
        if a in (Action.ACCEPT, Action.START, Action.DONE, Action.ASSIGN)
    ]
    rows.append(first)
    second = [
        button(t(f"btn.{a}", lang), RequestCb(action=a, id=request.id).pack())
        for a in actions
        if a in (Action.REJECT, Action.CANCEL, Action.REOPEN)
    ]
    if can_change_priority(status, viewer):
        second.append(
            button(
                t("btn.priority", lang),
                RequestCb(action=CardVerb.PRIORITY_MENU, id=request.id).pack(),
            )
        )
    if can_comment(status, viewer):
        second.append(
            button(t("btn.comment", lang), RequestCb(action=CardVerb.COMMENT, id=request.id).pack())
        )
    rows.append(second)
    if can_rate(status, viewer) and not request.rating:
        rows.append(rating_row(request.id))
    return inline(rows)


def rating_row(request_id: int) -> list[dict[str, str]]:
    return [
        button("★" * n, RequestCb(action=CardVerb.RATE, id=request_id, arg=str(n)).pack())
        for n in range(1, 6)
    ]


def new_request_keyboard(request_id: int, lang: str) -> Keyboard:
    """What staff see on a new request's notification."""
    return inline(
        [
            [
                button(
                    t("btn.accept", lang), RequestCb(action=Action.ACCEPT, id=request_id).pack()
                ),
                button(
                    t("btn.reject", lang), RequestCb(action=Action.REJECT, id=request_id).pack()
                ),
            ],
            [button(t("btn.details", lang), RequestCb(action=CardVerb.OPEN, id=request_id).pack())],
        ]
    )


# --- Lists -----------------------------------------------------------------------------------


def list_keyboard(
    page: Page[Request],
    lang: str,
    *,
    kind: ListKind,
    status: str = "",
    loc: str = "",
    pri: str = "",
    only: str = "",
) -> Keyboard:
    buttons = [
        [
            button(
                t(
                    "btn.open",
                    lang,
                    id=r.id,
                    title=cut(r.title, 30),
                    status=status_text(r.status, lang),
                ),
                RequestCb(action=CardVerb.OPEN, id=r.id).pack(),
            )
        ]
        for r in page.rows
    ]
    current = ListCb(kind=kind, page=page.number, status=status, loc=loc, pri=pri, only=only)
    buttons.append(nav_row(lang, current=current, page=page))
    if kind is ListKind.QUEUE:
        buttons.extend(queue_filters(current, lang))
    return inline(buttons)


def queue_filters(current: ListCb, lang: str) -> list[list[dict[str, str]]]:
    """Status, "only" and priority buttons: each sets its own filter and keeps the others (and
    the place); the one in force is marked; "all" clears all but the place."""

    def choice(label: Markup, **change: str) -> dict[str, str]:
        chosen = all(getattr(current, k) == v for k, v in change.items())
        data = current.model_copy(update={"page": 0, **change}).pack()
        return button(f"• {label}" if chosen and change else label, data)

    statuses = [
        choice(status_text(s.value, lang), status=s.value)
        for s in (Status.NEW, Status.ACCEPTED, Status.IN_PROGRESS, Status.REOPENED)
    ]
    everything = choice(t("btn.all", lang), status="", pri="", only="")
    narrow = [choice(t(f"queue.only.{o.value}", lang), only=o.value) for o in QueueOnly]
    priorities = [choice(priority_text(p.value, lang), pri=p.value) for p in reversed(Priority)]
    return [[everything, *statuses[:2]], statuses[2:], narrow, priorities]


def nav_row(
    lang: str, *, current: ListCb, page: Page[Request] | Page[User]
) -> list[dict[str, str]]:
    """◀ ▶ to the rows before and after `page` (none at either end), keeping the filters of
    `current`. Each names its page by a row of this one; its number is only a label."""
    row = []
    if page.has_prev:
        back = {"page": max(page.number - 1, 0), "edge": -page.rows[0].id}
        row.append(button(t("btn.prev", lang), current.model_copy(update=back).pack()))
    if page.has_next:
        ahead = {"page": page.number + 1, "edge": page.rows[-1].id}
        row.append(button(t("btn.next", lang), current.model_copy(update=ahead).pack()))
    return row


def staff_text(
    staff: Sequence[User], counts: dict[int, int], lang: str, page: int, pages: int
) -> Markup:
    lines = [t("staff.title", lang, page=page + 1, pages=pages)] + [
        t(
            "staff.line",
            lang,
            name=cut(name_of(u, lang), STAFF_NAME),
            role=t(f"role.{u.role}", lang),
            open=counts.get(u.id, 0),
        )
        for u in staff
    ]
    return Markup("\n".join(lines))


def role_changes_text(changes: Sequence[tuple[RoleChange, User, User | None]], lang: str) -> Markup:
    lines = [t("staff.changes", lang)] + [
        t(
            "staff.change",
            lang,
            when=when(change.created_at),
            name=cut(name_of(user, lang), STAFF_NAME),
            from_role=t(f"role.{change.from_role}", lang),
            to_role=t(f"role.{change.to_role}", lang),
            by=cut(name_of(changer, lang), STAFF_NAME),
        )
        for change, user, changer in changes
    ]
    return Markup("\n".join(lines))


def queue_filter_text(status: str, loc: str, lang: str, *, pri: str = "", only: str = "") -> Markup:
    parts = []
    if status:
        parts.append(status_text(status, lang))
    if pri:
        parts.append(priority_text(pri, lang))
    if only:
        parts.append(t(f"queue.only.{only}", lang))
    if loc:
        parts.append(Markup(f"«{escape(loc)}»"))
    return t("queue.filter", lang, what=Markup(", ".join(parts))) if parts else Markup("")


def assignee_keyboard(request_id: int, staff: Sequence[User], lang: str) -> Keyboard:
    return inline(
        [
            [
                button(
                    name_of(u, lang),
                    RequestCb(
                        action=CardVerb.ASSIGN_TO, id=request_id, arg=str(u.telegram_id)
                    ).pack(),
                )
            ]
            for u in staff
        ]
    )
