"""Erasure (GDPR Art. 17): the identity unlinked at once, then everything else scrubbed in
short steps.

Step one, `unlink`, runs in the command's transaction and touches a handful of rows whatever
the user's history: the profile's identity (Telegram id, username, names, language), every
outbox row to their chat, dead letters of their commands, their broadcasts' text, their exports,
their dialog state, drafts and recent places (Redis or var/dialogs.sqlite3). From its commit
nothing left can be linked to them, and a command of theirs issued before it is dropped
(db.users.upsert_user).

Then `scrub_step`, each call one short transaction of bounded size, run by the `privacy.scrub`
task until done: the free text (title, description, place) and files of their requests, their
comments, the free-text notes they wrote in histories, outbox rows caused by them or about their
requests (payloads quote names and texts), report files naming them; where other people's rows
on their requests name them (a staff comment "@ann, ..."), the name reads "erased user". Only
then is the user told, the last message they get. One transaction for a user with 10,000
requests held thousands of rows locked for 30 s and deadlocked with staff commenting on their
requests (bench/privacy.py); short steps lock a batch for milliseconds and never hold the
profile. Their progress is durable: a crashed worker's step is redone by the next delivery, and
an erasure left without progress is resumed by the relay (`stalled`).

Kept: request skeletons (status, priority, timestamps), linked to the anonymous profile row
(it has no identifier left) so reports and staff still see that they existed. ERASURE_MODE=
delete removes the requests with everything under them instead. An `erasure_audit` row says
that it ran, when, why and how many rows of each kind it touched, with nothing personal once
finished (until then its `pending` holds the names to look for and the chat to tell).

Run it again and it finds nothing: the profile no longer has the Telegram id to find it by.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celery import Signature, signature
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
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.clock import now
from core.domain import ERASED_TEXT, ErasureMode, ErasureReason, EventAction
from core.logging import get_logger
from core.roles import Role
from core.settings import get_settings
from core.states import BroadcastState
from core.texts import DEFAULT_LANGUAGE, t
from db.models import (
    AreaStaff,
    Attachment,
    Base,
    Broadcast,
    Comment,
    DeadLetter,
    ErasureAudit,
    GeneratedFile,
    Outbox,
    Request,
    RequestEvent,
    RoleChange,
    User,
)
from workers import uploads
from workers.outbox import Replies
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
# An unfinished erasure with no progress for this long lost its task: the relay resumes it.
STALLED_AFTER = timedelta(minutes=2)
SCRUB_TASK = "privacy.scrub"
# The steps' stages, in order.
_STAGES = ("requests", "comments", "notes", "outbox", "rest")


def export_key_prefix(user_id: int) -> str:
    """Generated files of a user's exports are keyed under this (see workers.privacy.export)."""
    return f"{EXPORT_KEY_PREFIX}:{user_id}:"


def scrub_signature(audit_id: int) -> Signature:
    """The task that scrubs erasure `audit_id` to the end (workers.privacy_tasks)."""
    return signature(SCRUB_TASK, args=(audit_id,))


def unlink(
    session: Session,
    telegram_id: int,
    *,
    reason: ErasureReason,
    mode: ErasureMode,
    tell: tuple[int, str] | None = None,
) -> ErasureAudit:
    """Step one, in the caller's transaction: the user with `telegram_id` can no longer be
    identified, and their audit row says what is left to scrub (`pending`; None when nothing
    is: a user never seen, or erased before). `tell` is (chat id, language) of the message
    "your data is erased", sent by the last step. Dialog keys go too (not transactional: a
    retry of a failed transaction deletes nothing more)."""
    counts: Counter[str] = Counter()
    # FOR UPDATE: a command of theirs in flight holds the row FOR KEY SHARE (db.users) and
    # commits first; one that comes after finds no profile.
    user = session.scalars(
        select(User).where(User.telegram_id == telegram_id).with_for_update()
    ).one_or_none()
    counts["outbox"] = _rowcount(session, delete(Outbox).where(Outbox.chat_id == telegram_id))
    counts["dead_letters"] = _erase_dead_letters(session, telegram_id)
    pending: dict[str, Any] | None = None
    if user is not None:
        pending = {
            "names": _names(user),
            "was_staff": _was_staff(session, user),
            "stage": _STAGES[0],
            "cursor": 0,
            "counts": {},
            "tell": list(tell) if tell is not None else None,
        }
        _unlink_user(session, user, counts)
    counts["dialog_keys"] = dialogs.forget(telegram_id)
    at = now()
    audit = ErasureAudit(
        # The worker's clock at the end, not the transaction's start: a command issued
        # while this ran is one from before the erasure (see db.users.upsert_user).
        erased_at=at,
        reason=reason.value,
        mode=mode.value,
        counts={k: v for k, v in sorted(counts.items())},
        user_id=user.id if user is not None else None,
        pending=pending,
        progress_at=at,
        finished_at=None if pending is not None else at,
    )
    session.add(audit)
    session.flush()
    log.info("privacy.unlinked", erasure=audit.id, reason=reason.value, mode=mode.value, **counts)
    return audit


def _unlink_user(session: Session, user: User, counts: Counter[str]) -> None:
    uid = user.id
    counts["broadcasts"] = _rowcount(
        session,
        update(Broadcast)
        .where(Broadcast.author_id == uid)
        .values(text=ERASED_TEXT, progress_chat_id=None, progress_message_id=None),
    )
    # One still being sent stops (its rows go in a later step); a draft cannot be confirmed.
    session.execute(
        update(Broadcast)
        .where(
            Broadcast.author_id == uid,
            Broadcast.state.in_((BroadcastState.DRAFT, BroadcastState.SENDING)),
        )
        .values(state=BroadcastState.CANCELLED, finished_at=now())
    )
    counts["files"] = _rowcount(
        session,
        delete(GeneratedFile).where(GeneratedFile.key.startswith(export_key_prefix(uid))),
    )
    counts["role_changes"] = _rowcount(session, delete(RoleChange).where(RoleChange.user_id == uid))
    counts["area_subscriptions"] = _rowcount(
        session, delete(AreaStaff).where(AreaStaff.user_id == uid)
    )
    user.telegram_id = None
    user.username = None
    user.first_name = None
    user.last_name = None
    user.language = DEFAULT_LANGUAGE
    user.role = Role.RESIDENT.value
    user.reachable = False
    user.erased_at = now()
    counts["profile"] = 1


@dataclass
class Step:
    """What one step did: `done` once the erasure is finished; `deliver`: the outbox rows to
    send after commit (the message to the user)."""

    done: bool
    deliver: list[int] = field(default_factory=list)


def scrub_step(session: Session, audit_id: int) -> Step:
    """One bounded step of erasure `audit_id`, in the caller's transaction. The audit row is
    locked meanwhile: two tasks on one erasure take turns, each going on from where the
    other's commit left it."""
    audit = session.get(ErasureAudit, audit_id, with_for_update=True)
    if audit is None or audit.finished_at is not None or audit.pending is None:
        return Step(done=True)
    work = dict(audit.pending)
    counts: Counter[str] = Counter(work["counts"])
    uid = audit.user_id
    stage = work["stage"] if uid is not None else "rest"
    if stage == "rest":
        return _finish(session, audit, work, counts)
    assert uid is not None
    if stage == "requests":
        ids = list(
            session.scalars(
                select(Request.id)
                .where(Request.author_id == uid, Request.id > work["cursor"])
                .order_by(Request.id)
                .limit(get_settings().erasure_step_requests)
            )
        )
        if ids:
            _scrub_requests(session, ids, ErasureMode(audit.mode), work["names"], counts)
            work["cursor"] = ids[-1]
        more = len(ids) == get_settings().erasure_step_requests
    elif stage == "comments":
        n = _delete_some(session, Comment, Comment.author_id == uid)
        counts["comments"] += n
        more = n == get_settings().erasure_step_rows
    elif stage == "notes":
        n = _clear_some_notes(session, uid)
        counts["notes"] += n
        more = n == get_settings().erasure_step_rows
    else:  # outbox: rows their actions wrote, to them as a user, their broadcasts' rows
        theirs = select(Broadcast.id).where(Broadcast.author_id == uid).scalar_subquery()
        n = 0
        for link in (Outbox.user_id == uid, Outbox.actor_id == uid, Outbox.batch_id.in_(theirs)):
            n += _delete_some(session, Outbox, link)
        counts["outbox"] += n
        more = n > 0
    if not more:
        work["stage"] = _STAGES[_STAGES.index(stage) + 1]
    work["counts"] = dict(counts)
    audit.pending = work
    audit.progress_at = now()
    return Step(done=False)


def _finish(
    session: Session, audit: ErasureAudit, work: dict[str, Any], counts: Counter[str]
) -> Step:
    names: list[str] = work["names"]
    if audit.user_id is not None:
        counts["mentions"] += _scrub_notices(session, audit.user_id, names)
        # Rows a command of theirs in flight wrote while step one ran.
        for link in (Outbox.user_id == audit.user_id, Outbox.actor_id == audit.user_id):
            counts["outbox"] += _rowcount(session, delete(Outbox).where(link))
    if work.get("was_staff"):
        counts["files"] += _erase_report_files(session, names)
    total = Counter(audit.counts)
    total.update(counts)
    audit.counts = {k: v for k, v in sorted(total.items())}
    audit.pending = None
    audit.finished_at = audit.progress_at = now()
    deliver: list[int] = []
    if work.get("tell"):
        chat_id, lang = work["tell"]
        replies = Replies.for_job(session, f"erasure:{audit.id}")
        # The last message: linked to no one, and gone once sent (it holds their chat id).
        replies.message(chat_id, t("privacy.erased", lang), **{uploads.FORGET_AFTER_SEND: True})
        session.flush()
        deliver = [row.id for row in replies.rows]
    session.flush()
    log.info("privacy.erased", erasure=audit.id, reason=audit.reason, mode=audit.mode, **total)
    return Step(done=True, deliver=deliver)


def stalled(session: Session) -> list[int]:
    """Unfinished erasures without progress for STALLED_AFTER (their task was lost): marked as
    progressing again, so that the next look does not hand them out twice."""
    ids = list(
        session.scalars(
            select(ErasureAudit.id)
            .where(
                ErasureAudit.finished_at.is_(None),
                ErasureAudit.progress_at < now() - STALLED_AFTER,
            )
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(
            update(ErasureAudit).where(ErasureAudit.id.in_(ids)).values(progress_at=now())
        )
    return ids


def _scrub_requests(
    session: Session, ids: list[int], mode: ErasureMode, names: list[str], counts: Counter[str]
) -> None:
    """A batch of their own requests: the rows under them, their text, others' mentions."""
    # The batch is locked first: a command on one of them that began before step one
    # committed (it holds the request, then waited for the profile) commits before the rows
    # under the request are read, so its comment and notice are scrubbed too.
    if mode is ErasureMode.DELETE:
        session.execute(select(Request.id).where(Request.id.in_(ids)).with_for_update())
    else:
        counts["requests"] += _rowcount(
            session,
            update(Request)
            .where(Request.id.in_(ids))
            .values(title=ERASED_TEXT, description=ERASED_TEXT, location=ERASED_TEXT),
        )
    # Notices about them quote their text and the author's name.
    counts["outbox"] += _rowcount(session, delete(Outbox).where(Outbox.request_id.in_(ids)))
    if mode is ErasureMode.DELETE:
        # Children first: SQLite enforces the cascades only with foreign keys on.
        for model in (Attachment, Comment, RequestEvent):
            counts[f"deleted_{model.__tablename__}"] += _rowcount(
                session, delete(model).where(model.request_id.in_(ids))
            )
        counts["deleted_requests"] += _rowcount(session, delete(Request).where(Request.id.in_(ids)))
        return
    counts["attachments"] += _rowcount(
        session, delete(Attachment).where(Attachment.request_id.in_(ids))
    )
    counts["mentions"] += _scrub_mentions(session, ids, names)


def _delete_some(session: Session, model: type[Base], where: ColumnElement[bool]) -> int:
    """Up to ERASURE_STEP_ROWS rows of `model` matching `where`, deleted."""
    pk: InstrumentedAttribute[int] = model.id  # type: ignore[attr-defined]
    # Ids first: with `IN (SELECT ... LIMIT)` PostgreSQL hashed the subquery and scanned the
    # whole table for it (bench/privacy.py: 1M comments read eleven times).
    ids = list(session.scalars(select(pk).where(where).limit(get_settings().erasure_step_rows)))
    return _rowcount(session, delete(model).where(pk.in_(ids))) if ids else 0


def _clear_some_notes(session: Session, uid: int) -> int:
    """Up to ERASURE_STEP_ROWS of the free-text history notes they wrote, cleared."""
    ids = list(
        session.scalars(
            select(RequestEvent.id)
            .where(
                RequestEvent.actor_id == uid,
                RequestEvent.note.is_not(None),
                RequestEvent.action.not_in(_STRUCTURED_NOTES),
            )
            .limit(get_settings().erasure_step_rows)
        )
    )
    if not ids:
        return 0
    return _rowcount(
        session, update(RequestEvent).where(RequestEvent.id.in_(ids)).values(note=None)
    )


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


def _scrub_mentions(session: Session, ids: list[int], names: list[str]) -> int:
    """Comments and notes of other people on requests `ids` that name the user: candidates
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
                select(model.id, column).where(model.request_id.in_(ids), mentions)
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


def _was_staff(session: Session, user: User) -> bool:
    """Report CSVs name staff (assignees), never residents: only staff need their scan."""
    return user.role != Role.RESIDENT.value or (
        session.scalar(select(Request.id).where(Request.assignee_id == user.id).limit(1))
        is not None
    )


def _erase_report_files(session: Session, names: list[str]) -> int:
    """Report files (CSV) that name them, dropped whole: a pending send of one fails as a
    file that is gone."""
    pattern = _pattern(names)
    if pattern is None:
        return 0
    touched = 0
    for row_id, content in session.execute(
        select(GeneratedFile.id, GeneratedFile.content).where(
            GeneratedFile.file_name.endswith(".csv")
        )
    ):
        if pattern.search(content.decode("utf-8", errors="replace")):
            touched += _rowcount(session, delete(GeneratedFile).where(GeneratedFile.id == row_id))
    return touched
