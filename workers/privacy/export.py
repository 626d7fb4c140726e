"""Export (GDPR Art. 15 and 20): everything stored about a user as one JSON document.

Streamed to a file: the profile, their requests (each with its files, comments and history,
merged from four ordered cursors, so 10,000 requests cost four queries and little memory),
their comments and history entries on other requests, and broadcasts they wrote. Other people
appear as the bot shows them to this user: staff by name, anyone else as "someone"; nothing
of other residents' own data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Select, select, union
from sqlalchemy.orm import Session, aliased

from core.clock import as_utc, now
from core.roles import Role
from db.models import Attachment, Broadcast, Comment, Request, RequestEvent, User

BATCH = 1000
SOMEONE = "someone"
FORMAT_VERSION = 1


def write_export(session: Session, user: User, path: Path) -> int:
    """Write the user's export to `path`; returns how many of their requests it holds."""
    with path.open("w", encoding="utf-8") as out:
        out.write(f'{{"format": {FORMAT_VERSION}, "exported_at": {_j(now())}, "profile": ')
        out.write(_j(_profile(user)))
        out.write(', "requests": [')
        count = _write_requests(session, user, out)
        out.write('], "comments_on_other_requests": [')
        _write_all(out, _their_comments_elsewhere(session, user))
        out.write('], "history_on_other_requests": [')
        _write_all(out, _their_events_elsewhere(session, user))
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


def _write_all(out: IO[str], items: Iterator[dict[str, Any]]) -> None:
    for index, item in enumerate(items):
        out.write(("," if index else "") + _j(item))


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


def _stream(session: Session, stmt: Select[Any]) -> Iterator[Any]:
    yield from session.execute(stmt.execution_options(yield_per=BATCH))


def _people(session: Session, user: User) -> dict[int, str]:
    """How the bot names the other people on the user's requests: staff and admins by name."""
    own = select(Request.id).where(Request.author_id == user.id).scalar_subquery()
    ids = union(
        select(Comment.author_id).where(Comment.request_id.in_(own)),
        select(RequestEvent.actor_id).where(RequestEvent.request_id.in_(own)),
        select(Request.assignee_id).where(Request.author_id == user.id),
    )
    named: dict[int, str] = {}
    for person in session.scalars(select(User).where(User.id.in_(ids))):
        if person.id == user.id:
            named[person.id] = "you"
        elif person.role in (Role.STAFF.value, Role.ADMIN.value) and person.erased_at is None:
            named[person.id] = _staff_name(person)
    return named


def _staff_name(person: User) -> str:
    full = " ".join(p for p in (person.first_name, person.last_name) if p)
    return full or (f"@{person.username}" if person.username else SOMEONE)


def _write_requests(session: Session, user: User, out: IO[str]) -> int:
    people = _people(session, user)
    own = select(Request.id).where(Request.author_id == user.id).scalar_subquery()
    requests = _stream(
        session, select(Request).where(Request.author_id == user.id).order_by(Request.id)
    )
    children = {
        kind: _grouped(
            _stream(
                session,
                select(model).where(model.request_id.in_(own)).order_by(model.request_id, model.id),
            )
        )
        for kind, model in _CHILDREN
    }
    pending: dict[str, tuple[int, list[Any]] | None] = {
        k: next(v, None) for k, v in children.items()
    }
    count = 0
    for (request,) in requests:
        item = _request(request, people)
        for kind, groups in children.items():
            rows: list[Any] = []
            # Children arrive in request order: skip groups of ids before this one (none, but a
            # row added meanwhile must not stall the merge), take this one's.
            while pending[kind] is not None and pending[kind][0] < request.id:  # type: ignore[index]
                pending[kind] = next(groups, None)
            current = pending[kind]
            if current is not None and current[0] == request.id:
                rows = current[1]
                pending[kind] = next(groups, None)
            render: Any = _CHILD[kind]
            item[kind] = [render(row, people) for row in rows]
        out.write(("," if count else "") + _j(item))
        count += 1
    return count


def _grouped(rows: Iterator[Any]) -> Iterator[tuple[int, list[Any]]]:
    for request_id, group in groupby((row for (row,) in rows), key=lambda r: r.request_id):
        yield request_id, list(group)


def _request(request: Request, people: dict[int, str]) -> dict[str, Any]:
    return {
        "id": request.id,
        "title": request.title,
        "description": request.description,
        "location": request.location,
        "priority": request.priority,
        "status": request.status,
        "rating": request.rating,
        "assignee": _who(request.assignee_id, people),
        "created_at": request.created_at,
        "accepted_at": request.accepted_at,
        "started_at": request.started_at,
        "done_at": request.done_at,
        "closed_at": request.closed_at,
    }


def _who(user_id: int | None, people: dict[int, str]) -> str | None:
    return None if user_id is None else people.get(user_id, SOMEONE)


def _attachment(row: Attachment, _: dict[int, str]) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "file_id": row.file_id,
        "file_unique_id": row.file_unique_id,
        "file_name": row.file_name,
        "mime_type": row.mime_type,
        "size": row.size,
        "created_at": row.created_at,
    }


def _comment(row: Comment, people: dict[int, str]) -> dict[str, Any]:
    return {
        "author": _who(row.author_id, people),
        "text": row.text,
        "file_id": row.file_id,
        "created_at": row.created_at,
    }


def _event(row: RequestEvent, people: dict[int, str]) -> dict[str, Any]:
    return {
        "action": row.action,
        "from": row.from_status,
        "to": row.to_status,
        "note": row.note,
        "by": _who(row.actor_id, people),
        "created_at": row.created_at,
    }


_CHILD = {"attachments": _attachment, "comments": _comment, "history": _event}
_CHILDREN: tuple[tuple[str, Any], ...] = (
    ("attachments", Attachment),
    ("comments", Comment),
    ("history", RequestEvent),
)


def _their_comments_elsewhere(session: Session, user: User) -> Iterator[dict[str, Any]]:
    request = aliased(Request)
    stmt = (
        select(Comment)
        .join(request, request.id == Comment.request_id)
        .where(Comment.author_id == user.id, request.author_id.is_distinct_from(user.id))
        .order_by(Comment.id)
    )
    for (row,) in _stream(session, stmt):
        yield {
            "request_id": row.request_id,
            "text": row.text,
            "file_id": row.file_id,
            "created_at": row.created_at,
        }


def _their_events_elsewhere(session: Session, user: User) -> Iterator[dict[str, Any]]:
    request = aliased(Request)
    stmt = (
        select(RequestEvent)
        .join(request, request.id == RequestEvent.request_id)
        .where(RequestEvent.actor_id == user.id, request.author_id.is_distinct_from(user.id))
        .order_by(RequestEvent.id)
    )
    for (row,) in _stream(session, stmt):
        yield {
            "request_id": row.request_id,
            "action": row.action,
            "from": row.from_status,
            "to": row.to_status,
            "note": row.note,
            "created_at": row.created_at,
        }


def _their_broadcasts(session: Session, user: User) -> Iterator[dict[str, Any]]:
    stmt = select(Broadcast).where(Broadcast.author_id == user.id).order_by(Broadcast.id)
    for (row,) in _stream(session, stmt):
        yield {
            "id": row.id,
            "audience": row.audience,
            "text": row.text,
            "state": row.state,
            "total": row.total,
            "created_at": row.created_at,
            "finished_at": row.finished_at,
        }
