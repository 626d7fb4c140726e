"""Erasure (GDPR Art. 17): everything that identifies a user, gone in one transaction.

Erased: the profile's identity (Telegram id, username, names, language), the free text (title,
description, place) and files of their requests, their comments, the free-text notes they wrote
in histories, every outbox row to them, caused by them or about their requests (payloads quote
names and texts), the text of broadcasts they wrote, dead letters of their commands, exports
made for them, and their dialog state, drafts and recent places (Redis or var/dialogs.sqlite3).
Where other people's rows on their requests name them (a staff comment "@ann, ..."), the name
reads "erased user".

Kept: request skeletons (status, priority, timestamps), linked to the anonymous profile row
(it has no identifier left) so reports and staff still see that they existed. ERASURE_MODE=
delete removes the requests with everything under them instead. An `erasure_audit` row says
that it ran, when, why and how many rows of each kind it touched, with nothing personal.

Run it again and it finds nothing: the profile no longer has the Telegram id to find it by.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Table,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from core.clock import now
from core.domain import ERASED_TEXT, ErasureMode, ErasureReason, EventAction
from core.logging import get_logger
from core.roles import Role
from core.states import BroadcastState
from core.texts import DEFAULT_LANGUAGE
from db.models import (
    Attachment,
    Broadcast,
    Comment,
    DeadLetter,
    ErasureAudit,
    GeneratedFile,
    Outbox,
    Request,
    RequestEvent,
    User,
)
from workers.privacy import dialogs

log = get_logger(__name__)

# History notes that are structured values, not someone's words (see EventAction): kept.
_STRUCTURED_NOTES = (
    EventAction.ASSIGN,
    EventAction.RATED,
    EventAction.UNDELIVERED,
    EventAction.ESCALATED,
    EventAction.REPAIRED,
)
ERASED_NAME = "erased user"
# Names shorter than this are not looked for in other people's words ("Al" is in "Alarm").
_MIN_NAME = 3
EXPORT_KEY_PREFIX = "export"


def export_key_prefix(user_id: int) -> str:
    """Generated files of a user's exports are keyed under this (see workers.privacy.export)."""
    return f"{EXPORT_KEY_PREFIX}:{user_id}:"


def erase(
    session: Session,
    telegram_id: int,
    *,
    reason: ErasureReason,
    mode: ErasureMode,
) -> dict[str, int]:
    """Erase the user with `telegram_id` in the caller's transaction; the counts of rows
    touched by kind (also in the audit row). Dialog keys go too (not transactional: a retry
    of a failed transaction deletes nothing more)."""
    counts: Counter[str] = Counter()
    # FOR UPDATE: a command of theirs in flight holds the row FOR KEY SHARE (db.users) and
    # commits first; one that comes after finds no profile.
    user = session.scalars(
        select(User).where(User.telegram_id == telegram_id).with_for_update()
    ).one_or_none()
    counts["outbox"] = _rowcount(session, delete(Outbox).where(Outbox.chat_id == telegram_id))
    counts["dead_letters"] = _erase_dead_letters(session, telegram_id)
    if user is not None:
        _erase_user_rows(session, user, mode, counts)
    counts["dialog_keys"] = dialogs.forget(telegram_id)
    session.add(
        ErasureAudit(
            # The worker's clock at the end, not the transaction's start: a command issued
            # while this ran is one from before the erasure (see db.users.upsert_user).
            erased_at=now(),
            reason=reason.value,
            mode=mode.value,
            counts={k: v for k, v in sorted(counts.items())},
        )
    )
    session.flush()
    log.info("privacy.erased", reason=reason.value, mode=mode.value, **counts)
    return dict(counts)


def _erase_user_rows(session: Session, user: User, mode: ErasureMode, counts: Counter[str]) -> None:
    uid = user.id
    names = _names(user)
    own = select(Request.id).where(Request.author_id == uid).scalar_subquery()
    theirs = select(Broadcast.id).where(Broadcast.author_id == uid).scalar_subquery()
    # One statement per link, each on its index (an OR of them scans the whole outbox).
    for link in (
        Outbox.user_id == uid,
        Outbox.actor_id == uid,
        Outbox.request_id.in_(own),
        Outbox.batch_id.in_(theirs),
    ):
        counts["outbox"] += _rowcount(session, delete(Outbox).where(link))
    counts["comments"] = _rowcount(session, delete(Comment).where(Comment.author_id == uid))
    counts["notes"] = _rowcount(
        session,
        update(RequestEvent)
        .where(
            RequestEvent.actor_id == uid,
            RequestEvent.note.is_not(None),
            RequestEvent.action.not_in(_STRUCTURED_NOTES),
        )
        .values(note=None),
    )
    if mode is ErasureMode.DELETE:
        # Children first: SQLite enforces the cascades only with foreign keys on.
        for model in (Attachment, Comment, RequestEvent):
            counts[f"deleted_{model.__tablename__}"] = _rowcount(
                session, delete(model).where(model.request_id.in_(own))
            )
        counts["deleted_requests"] = _rowcount(
            session, delete(Request).where(Request.author_id == uid)
        )
    else:
        counts["attachments"] = _rowcount(
            session, delete(Attachment).where(Attachment.request_id.in_(own))
        )
        counts["requests"] = _rowcount(
            session,
            update(Request)
            .where(Request.author_id == uid)
            .values(title=ERASED_TEXT, description=ERASED_TEXT, location=ERASED_TEXT),
        )
        # Other people's words on their requests that name them.
        counts["mentions"] = _scrub_mentions(session, own, names)
    counts["broadcasts"] = _rowcount(
        session,
        update(Broadcast)
        .where(Broadcast.author_id == uid)
        .values(text=ERASED_TEXT, progress_chat_id=None, progress_message_id=None),
    )
    # One still being sent has lost its rows above; a draft cannot be confirmed any more.
    session.execute(
        update(Broadcast)
        .where(
            Broadcast.author_id == uid,
            Broadcast.state.in_((BroadcastState.DRAFT, BroadcastState.SENDING)),
        )
        .values(state=BroadcastState.CANCELLED, finished_at=now())
    )
    counts["files"] = _erase_files(session, user, names)
    counts["mentions"] += _scrub_notices(session, uid, names)
    user.telegram_id = None
    user.username = None
    user.first_name = None
    user.last_name = None
    user.language = DEFAULT_LANGUAGE
    user.role = Role.RESIDENT.value
    user.reachable = False
    user.erased_at = now()
    counts["profile"] = 1


def _rowcount(session: Session, statement: Any) -> int:
    result = session.execute(statement, execution_options={"synchronize_session": False})
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)


def _erase_dead_letters(session: Session, telegram_id: int) -> int:
    """Failed commands keep the whole command: the actor's names and texts."""
    # Dead letters hold malformed commands too (a forged user_id "abc"): compare without casts.
    theirs: ColumnElement[bool]
    if session.get_bind().dialect.name == "postgresql":
        sought = literal({"actor": {"user_id": telegram_id}}, type_=JSONB)
        theirs = DeadLetter.command.op("@>")(sought)
    else:
        theirs = func.json_extract(DeadLetter.command, "$.actor.user_id") == telegram_id
    return _rowcount(session, delete(DeadLetter).where(theirs))


def _names(user: User) -> list[str]:
    """How other people's words may name the user, longest first."""
    found: set[str] = set()
    if user.username:
        found |= {"@" + user.username, user.username}
    full = " ".join(p for p in (user.first_name, user.last_name) if p)
    for name in (full, user.first_name, user.last_name):
        if name and len(name) >= _MIN_NAME:
            found.add(name)
    return sorted(found, key=len, reverse=True)


def _pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = [re.escape(n) for n in names]
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _scrub_mentions(session: Session, own: Any, names: list[str]) -> int:
    """Comments and notes of other people on the user's requests that name them: candidates
    found in SQL (ILIKE), the names replaced here, written back in one executemany a table
    (bench/privacy.py: a statement per row cost 20 s for 3,600 mentions)."""
    pattern = _pattern(names)
    if pattern is None:
        return 0
    touched = 0
    for model, column in ((Comment, Comment.text), (RequestEvent, RequestEvent.note)):
        mentions = or_(*(column.icontains(name, autoescape=True) for name in names))
        changed = [
            {"row_id": row_id, "scrubbed": scrubbed}
            for row_id, text in session.execute(
                select(model.id, column).where(model.request_id.in_(own), mentions)
            )
            if text is not None and (scrubbed := pattern.sub(ERASED_NAME, text)) != text
        ]
        if changed:
            table: Table = model.__table__  # type: ignore[assignment]
            # Core's executemany (the ORM would take a list of rows as a bulk by primary key).
            session.execute(
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({column.key: bindparam("scrubbed")}),
                changed,
            )
        touched += len(changed)
    return touched


def _scrub_notices(session: Session, uid: int, names: list[str]) -> int:
    """Notices about requests assigned to them (an escalation names the assignee)."""
    pattern = _pattern(names)
    if pattern is None:
        return 0
    assigned = select(Request.id).where(Request.assignee_id == uid).scalar_subquery()
    touched = 0
    for row_id, payload in session.execute(
        select(Outbox.id, Outbox.payload).where(Outbox.request_id.in_(assigned))
    ):
        scrubbed = {
            k: pattern.sub(ERASED_NAME, v) if isinstance(v, str) and k != "chat_id" else v
            for k, v in payload.items()
        }
        if scrubbed != payload:
            session.execute(update(Outbox).where(Outbox.id == row_id).values(payload=scrubbed))
            touched += 1
    return touched


def _erase_files(session: Session, user: User, names: list[str]) -> int:
    """Their exports, and report files (CSV) that name them (staff)."""
    touched = _rowcount(
        session,
        delete(GeneratedFile).where(GeneratedFile.key.startswith(export_key_prefix(user.id))),
    )
    pattern = _pattern(names)
    if pattern is None:
        return touched
    # Report CSVs name staff (assignees), never residents: only staff need the scan.
    was_staff = user.role != Role.RESIDENT.value or session.scalar(
        select(Request.id).where(Request.assignee_id == user.id).limit(1)
    )
    if not was_staff:
        return touched
    for row_id, content in session.execute(
        select(GeneratedFile.id, GeneratedFile.content).where(
            GeneratedFile.file_name.endswith(".csv")
        )
    ):
        if pattern.search(content.decode("utf-8", errors="replace")):
            # Dropped whole: a pending send of it fails as a file that is gone.
            touched += _rowcount(session, delete(GeneratedFile).where(GeneratedFile.id == row_id))
    return touched
