"""Export (GDPR Art. 15 and 20): everything stored about a user as one JSON document.

Streamed to a file: the profile, their requests (each with its files, comments and history),
their comments and history entries on other requests, broadcasts they wrote, and the changes of
their role. Other people appear as the bot shows them to this user: staff by name, anyone else
as "someone"; nothing of other residents' own data.

Their request ids are read once, then the requests and the rows under them a chunk of ids at a
time, as plain rows (bench/privacy.py, 10,000 requests: ORM objects and streamed cursors over
`request_id IN (subquery)`, planned as merge joins over whole indexes, cost 30 s).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import BigInteger, ColumnElement, any_, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from core.clock import as_utc, now
from core.roles import Role
from db.models import (
    Area,
    AreaStaff,
    Attachment,
    Broadcast,
    Comment,
    Request,
    RequestEvent,
    RoleChange,
    User,
)

CHUNK = 1000  # request ids a query
SOMEONE = "someone"
FORMAT_VERSION = 1


def write_export(session: Session, user: User, path: Path) -> int:
    """Write the user's export to `path`; returns how many of their requests it holds."""
    if session.get_bind().dialect.name == "postgresql":
        # Timestamps in UTC, as SQLite's (naive, UTC) are written: for this transaction only.
        session.execute(text("SET LOCAL TIME ZONE 'UTC'"))
    people = _people(session, user)
    with path.open("wb") as out:
        out.write(b'{"format":%d,"exported_at":%s,"profile":' % (FORMAT_VERSION, _j(now())))
        out.write(_j(_profile(user)))
        out.write(b',"requests":[')
        count = _write_all(out, _requests(session, user, people))
        out.write(b'],"comments_on_other_requests":[')
        _write_all(out, _elsewhere(session, user, Comment, _COMMENT, Comment.author_id))
        out.write(b'],"history_on_other_requests":[')
        _write_all(out, _elsewhere(session, user, RequestEvent, _EVENT, RequestEvent.actor_id))
        out.write(b'],"broadcasts":[')
        _write_all(out, _their_broadcasts(session, user))
        out.write(b'],"role_changes":[')
        _write_all(out, _their_role_changes(session, user, people))
        out.write(b'],"areas":[')
        _write_all(out, _their_areas(session, user))
        out.write(b"]}\n")
    return count


def _j(value: Any) -> bytes:
    # orjson: JSON encoding was a third of the export's time with the standard library
    # (bench/privacy.py); datetimes are written as ISO 8601, naive ones (SQLite) as UTC.
    return orjson.dumps(value, option=orjson.OPT_NAIVE_UTC)


def _write_all(out: IO[bytes], items: Iterable[dict[str, Any]]) -> int:
    count = 0
    for item in items:
        out.write(b"," + _j(item) if count else _j(item))
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
        "created_at": as_utc(user.created_at),
        "updated_at": as_utc(user.updated_at),
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


def _items(
    shape: tuple[tuple[str, Any], ...], rows: Iterable[Sequence[Any]], people: dict[int, str]
) -> Iterator[tuple[Sequence[Any], dict[str, Any]]]:
    """Each row with its item: the shape's values by key (extra columns after them are left
    out), people named (see _who)."""
    keys = [key for key, _ in shape]
    persons = [key for key in keys if key in _PERSON_KEYS]
    for row in rows:
        item = dict(zip(keys, row, strict=False))  # the row may carry more columns
        for key in persons:
            item[key] = _who(item[key], people)
        yield row, item


def _among(session: Session, column: Any, ids: list[int]) -> ColumnElement[bool]:
    """`column IN ids`; on PostgreSQL `= ANY(:array)`: one parameter instead of a thousand
    (compiling and sending 40,000 parameters was a tenth of the export; bench/privacy.py)."""
    if session.get_bind().dialect.name == "postgresql":
        found: ColumnElement[bool] = column == any_(literal(ids, ARRAY(BigInteger)))
    else:
        found = column.in_(ids)
    return found


def _requests(session: Session, user: User, people: dict[int, str]) -> Iterator[dict[str, Any]]:
    ids = list(
        session.scalars(select(Request.id).where(Request.author_id == user.id).order_by(Request.id))
    )
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        under: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for kind, model, shape in _CHILDREN:
            rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
            found = session.execute(
                select(*(c for _, c in shape), model.request_id)
                .where(_among(session, model.request_id, chunk))
                .order_by(model.request_id, model.id)
            )
            for row, item in _items(shape, found, people):
                rows[row[-1]].append(item)
            under[kind] = rows
        found = session.execute(
            select(*(c for _, c in _REQUEST))
            .where(_among(session, Request.id, chunk))
            .order_by(Request.id)
        )
        for row, item in _items(_REQUEST, found, people):
            for kind, _, _ in _CHILDREN:
                item[kind] = under[kind].get(row[0], [])
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
    # NOT IN their (few) request ids, hashed: a join to `requests` filtered on the author read
    # the whole author index (1M requests) for it (bench/privacy.py: 440 -> 200 ms).
    theirs = select(Request.id).where(Request.author_id == user.id)
    stmt = (
        select(model.request_id, *(c for key, c in shape if key not in _PERSON_KEYS))
        .where(by == user.id, model.request_id.not_in(theirs))
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


def _their_areas(session: Session, user: User) -> Iterator[dict[str, Any]]:
    """The areas the user (as staff) subscribed to."""
    stmt = (
        select(Area.name, AreaStaff.created_at)
        .join(AreaStaff, AreaStaff.area_id == Area.id)
        .where(AreaStaff.user_id == user.id)
        .order_by(Area.id)
    )
    for name, subscribed_at in session.execute(stmt):
        yield {"area": name, "subscribed_at": subscribed_at}


def _their_role_changes(
    session: Session, user: User, people: dict[int, str]
) -> Iterator[dict[str, Any]]:
    stmt = select(RoleChange).where(RoleChange.user_id == user.id).order_by(RoleChange.id)
    for row in session.scalars(stmt):
        yield {
            "from": row.from_role,
            "to": row.to_role,
            "by": _who(row.changed_by, people),
            "at": row.created_at,
        }
