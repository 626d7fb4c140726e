"""Export (GDPR Art. 15 and 20): everything stored about a user as one JSON document.

Streamed to a file: the profile, their requests (each with its files, comments and history),
their comments and history entries on other requests, and broadcasts they wrote. Other people
appear as the bot shows them to this user: staff by name, anyone else as "someone"; nothing
of other residents' own data.

Their request ids are read once, then the requests and the rows under them a chunk of ids at a
time, as plain rows (bench/privacy.py, 10,000 requests: ORM objects and streamed cursors over
`request_id IN (subquery)`, planned as merge joins over whole indexes, cost 30 s).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from core.clock import as_utc, now
from core.roles import Role
from db.models import Attachment, Broadcast, Comment, Request, RequestEvent, User

CHUNK = 1000  # request ids a query
SOMEONE = "someone"
FORMAT_VERSION = 1


def write_export(session: Session, user: User, path: Path) -> int:
    """Write the user's export to `path`; returns how many of their requests it holds."""
    people = _people(session, user)
    with path.open("w", encoding="utf-8") as out:
        out.write(f'{{"format": {FORMAT_VERSION}, "exported_at": {_j(now())}, "profile": ')
        out.write(_j(_profile(user)))
        out.write(', "requests": [')
        count = _write_all(out, _requests(session, user, people))
        out.write('], "comments_on_other_requests": [')
        _write_all(out, _elsewhere(session, user, Comment, _COMMENT, Comment.author_id))
        out.write('], "history_on_other_requests": [')
        _write_all(out, _elsewhere(session, user, RequestEvent, _EVENT, RequestEvent.actor_id))
        out.write('], "broadcasts": [')
        _write_all(out, _their_broadcasts(session, user))
        out.write("]}\n")
    return count


def _j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    raise TypeError(type(value).__name__)


def _write_all(out: IO[str], items: Iterable[dict[str, Any]]) -> int:
    count = 0
    for item in items:
        out.write(("," if count else "") + _j(item))
        count += 1
    return count


def _profile(user: User) -> dict[str, Any]:
    return {
        "telegram_id": user.telegram_id,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "language": user.language,
        "role": user.role,
        "reachable": user.reachable,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    }


def _people(session: Session, user: User) -> dict[int, str]:
    """How the bot names people to this user: themselves "you", staff and admins by name
    (a few hundred on a large site), anyone else "someone" (see _who)."""
    named = {
        pid: _staff_name(first, last, username)
        for pid, first, last, username in session.execute(
            select(User.id, User.first_name, User.last_name, User.username).where(
                User.role.in_((Role.STAFF.value, Role.ADMIN.value)), User.erased_at.is_(None)
            )
        )
    }
    named[user.id] = "you"
    return named


def _staff_name(first: str | None, last: str | None, username: str | None) -> str:
    full = " ".join(p for p in (first, last) if p)
    return full or (f"@{username}" if username else SOMEONE)


def _who(user_id: int | None, people: dict[int, str]) -> str | None:
    return None if user_id is None else people.get(user_id, SOMEONE)


# What each kind of row shows: (key, column) pairs; "by" columns name a person (see _who).
_REQUEST = (
    ("id", Request.id),
    ("title", Request.title),
    ("description", Request.description),
    ("location", Request.location),
    ("priority", Request.priority),
    ("status", Request.status),
    ("rating", Request.rating),
    ("assignee", Request.assignee_id),
    ("created_at", Request.created_at),
    ("accepted_at", Request.accepted_at),
    ("started_at", Request.started_at),
    ("done_at", Request.done_at),
    ("closed_at", Request.closed_at),
)
_ATTACHMENT = (
    ("kind", Attachment.kind),
    ("file_id", Attachment.file_id),
    ("file_unique_id", Attachment.file_unique_id),
    ("file_name", Attachment.file_name),
    ("mime_type", Attachment.mime_type),
    ("size", Attachment.size),
    ("created_at", Attachment.created_at),
)
_COMMENT = (
    ("author", Comment.author_id),
    ("text", Comment.text),
    ("file_id", Comment.file_id),
    ("created_at", Comment.created_at),
)
_EVENT = (
    ("action", RequestEvent.action),
    ("from", RequestEvent.from_status),
    ("to", RequestEvent.to_status),
    ("note", RequestEvent.note),
    ("by", RequestEvent.actor_id),
    ("created_at", RequestEvent.created_at),
)
_PERSON_KEYS = {"assignee", "author", "by"}
_CHILDREN = (
    ("attachments", Attachment, _ATTACHMENT),
    ("comments", Comment, _COMMENT),
    ("history", RequestEvent, _EVENT),
)


def _item(
    shape: tuple[tuple[str, Any], ...], row: Sequence[Any], people: dict[int, str]
) -> dict[str, Any]:
    return {
        key: _who(value, people) if key in _PERSON_KEYS else value
        for (key, _), value in zip(shape, row, strict=False)
    }


def _requests(session: Session, user: User, people: dict[int, str]) -> Iterator[dict[str, Any]]:
    ids = list(
        session.scalars(select(Request.id).where(Request.author_id == user.id).order_by(Request.id))
    )
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        under: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for kind, model, shape in _CHILDREN:
            rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for row in session.execute(
                select(*(c for _, c in shape), model.request_id)
                .where(model.request_id.in_(chunk))
                .order_by(model.request_id, model.id)
            ):
                rows[cast(int, row[-1])].append(_item(shape, row, people))
            under[kind] = rows
        for row in session.execute(
            select(*(c for _, c in _REQUEST)).where(Request.id.in_(chunk)).order_by(Request.id)
        ):
            item = _item(_REQUEST, row, people)
            for kind, _, _ in _CHILDREN:
                item[kind] = under[kind].get(row.id, [])
            yield item


def _elsewhere(
    session: Session,
    user: User,
    model: type[Comment] | type[RequestEvent],
    shape: tuple[tuple[str, Any], ...],
    by: Any,
) -> Iterator[dict[str, Any]]:
    """Their comments or history entries on requests that are not theirs: the request's id,
    and the row without naming them."""
    request = aliased(Request)
    stmt = (
        select(model.request_id, *(c for key, c in shape if key not in _PERSON_KEYS))
        .join(request, request.id == model.request_id)
        .where(by == user.id, request.author_id.is_distinct_from(user.id))
        .order_by(model.id)
        .execution_options(yield_per=CHUNK)
    )
    keys = ["request_id", *(key for key, _ in shape if key not in _PERSON_KEYS)]
    for row in session.execute(stmt):
        yield dict(zip(keys, row, strict=True))


def _their_broadcasts(session: Session, user: User) -> Iterator[dict[str, Any]]:
    stmt = select(Broadcast).where(Broadcast.author_id == user.id).order_by(Broadcast.id)
    for row in session.scalars(stmt):
        yield {
            "id": row.id,
            "audience": row.audience,
            "text": row.text,
            "state": row.state,
            "total": row.total,
            "created_at": row.created_at,
            "finished_at": row.finished_at,
        }
