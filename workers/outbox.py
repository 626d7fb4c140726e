"""The outbox: messages are rows written in the command's transaction and sent after commit.

A row is claimed with a lease (state `sending` until `next_attempt_at`) in a short transaction
(SKIP LOCKED), then sent outside any transaction, so the fast path, `notifications.deliver`, the
drains and the relay never send the same row twice (see docs/design.md, Notifications).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import product
from typing import Any

from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from celery import Signature, signature
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from core.clock import as_utc, now
from core.domain import EventAction
from core.logging import get_logger
from core.metrics import metrics
from core.pacing import get_limiter
from core.settings import get_settings
from core.states import OutboxState
from db.models import Outbox, RequestEvent, User
from db.session import session_scope
from workers import uploads
from workers.telegram import get_client, method_for
from workers.timing import MAX_PARKED_DELAY_S

log = get_logger(__name__)

# Kept for callers outside the workers (bench/broadcast.py); the workers use OutboxState.

MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0


DELIVER_TASK = "notifications.deliver"

# A notice to many people (a new request, or an author's comment while nobody is assigned, to
# every staff member of the place): one row in the command's transaction, written out per
# recipient by whoever delivers it (`expand`), off the interactive path. 300 rows in the
# command cost a resident's comment 40 ms of a worker (3.5 ms with an assignee), 110-200 ms
# beside other commands (bench/privacy.py). Not a Bot API method: never sent as such, and, not
# starting with "send", it neither waits for nor holds up any chat (see _in_order).
FAN_OUT = "zavhoz.fanOut"
# A fan-out row's chat: none (its recipients are in the payload, by user id only: an erasure of
# one of them leaves no Telegram id behind in it).
NO_CHAT = 0

# (method, payload) messages a recipient gets, in order.
Messages = list[tuple[str, dict[str, Any]]]


def html(text: str, **extra: Any) -> dict[str, Any]:
    """A sendMessage payload: our texts are HTML (core.texts escapes what users wrote)."""
    return {"text": text, "parse_mode": "HTML", **extra}


@dataclass
class Replies:
    """The one way to send from the workers: outbox rows written in the caller's transaction.

    A command's replies to its own actor are sent right after commit by the command's task (the
    fast path); every other row (a notice to staff, a job's report) is handed to
    `notifications.deliver`, so an interactive worker never waits on the rate limiter for 40
    staff chats. Dedupe keys derive from `key`, so a retried command or job writes nothing new.
    """

    session: Session
    key: str
    # The acting user's chat: rows to it are the command's inline replies.
    actor_chat_id: int | None = None
    # The acting user (set once their profile is loaded): rows their action writes may quote
    # them, and erasure finds those rows by it.
    actor_id: int | None = None
    rows: list[Outbox] = field(default_factory=list)
    # Work to start once the transaction is committed (e.g. a broadcast's drains), as task
    # signatures by name: the task layer sends them.
    after_commit: list[Signature] = field(default_factory=list)

    @classmethod
    def for_command(cls, session: Session, key: str, actor_chat_id: int) -> Replies:
        return cls(session, key, actor_chat_id)

    @classmethod
    def for_job(cls, session: Session, key: str) -> Replies:
        """A scheduled job, a privacy task, the broadcast engine: every row is a notice."""
        return cls(session, key)

    def inline_ids(self) -> list[int]:
        return [r.id for r in self.rows if r.chat_id == self.actor_chat_id]

    def notice_ids(self) -> list[int]:
        return [r.id for r in self.rows if r.chat_id != self.actor_chat_id]

    def send(
        self,
        chat_id: int,
        method: str,
        payload: dict[str, Any],
        *,
        user_id: int | None = None,
        request_id: int | None = None,
    ) -> Outbox:
        row = Outbox(
            dedupe_key=f"{self.key}:{len(self.rows)}",
            chat_id=chat_id,
            user_id=user_id,
            request_id=request_id,
            actor_id=self.actor_id,
            method=method,
            payload={"chat_id": chat_id, **payload},
            state=OutboxState.PENDING,
            attempts=0,
            next_attempt_at=now(),
        )
        self.session.add(row)
        self.rows.append(row)
        return row

    def fan_out(
        self, user_ids: list[int], by_lang: dict[str, Messages], *, request_id: int | None
    ) -> Outbox | None:
        """The same messages to each of `user_ids`, in their language (`by_lang`: the same
        methods in the same order for every language; the first stands in for any other),
        written out per recipient after commit (see FAN_OUT)."""
        if not user_ids or not by_lang:
            return None
        messages = [
            {"method": method, "by_lang": {lang: by_lang[lang][i][1] for lang in by_lang}}
            for i, (method, _) in enumerate(next(iter(by_lang.values())))
        ]
        payload = {"users": user_ids, "messages": messages}
        return self.send(NO_CHAT, FAN_OUT, payload, request_id=request_id)

    def message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        request_id: int | None = None,
        **extra: Any,
    ) -> Outbox:
        return self.send(
            chat_id, "sendMessage", html(text, **extra), user_id=user_id, request_id=request_id
        )


def pending_ids_for_key(session: Session, key: str) -> list[int]:
    """Rows a command wrote that are still unsent: a redelivery retries them, nothing more."""
    return list(
        session.scalars(
            select(Outbox.id).where(
                Outbox.dedupe_key.startswith(key + ":", autoescape=True),
                Outbox.state == OutboxState.PENDING,
            )
        )
    )


def backoff_delay(attempts: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempts))  # noqa: S311


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    # Rows to try again, with the earliest time they may go.
    retry_at: dict[int, datetime] = field(default_factory=dict)


def deliver_signature(ids: Iterable[int]) -> Signature | None:
    """Hand rows to `notifications.deliver` (None when there are none)."""
    ids = sorted(ids)
    return signature(DELIVER_TASK, args=(ids,)) if ids else None


def retry_signature(report: Report) -> Signature | None:
    """Retry rows when they are due (429's retry_after, or backoff). Only short waits are
    parked on the broker; rows due later are sent by the relay, which runs every 30 s."""
    soon = now() + timedelta(seconds=MAX_PARKED_DELAY_S)
    due_soon = {i: at for i, at in report.retry_at.items() if as_utc(at) <= soon}
    if not due_soon:
        return None
    return signature(DELIVER_TASK, args=(sorted(due_soon),), eta=max(due_soon.values()))


def deliver(
    ids: Iterable[int], *, budget_s: float | None = None, claimed: Outbox | None = None
) -> Report:
    """Send the due rows among `ids`; with a budget, stop starting sends once it is spent (the
    rest stays pending for the next run). `claimed`: one of them, claimed already (see
    claim_in_command)."""
    report = Report()
    deadline = None if budget_s is None else time.monotonic() + budget_s

    handled: set[int] = set()

    def count(row_id: int, outcome: str, retry_at: datetime | None) -> None:
        handled.add(row_id)
        report.counts[outcome] = report.counts.get(outcome, 0) + 1
        if retry_at is not None:
            report.retry_at[row_id] = retry_at

    work = deque(ids)
    while work:
        row_id = work.popleft()
        if row_id in handled:
            continue  # sent after its predecessor, below
        if deadline is not None and time.monotonic() > deadline:
            report.counts["deferred"] = report.counts.get("deferred", 0) + 1
            report.retry_at[row_id] = now()  # for a task of its own (see retry_signature)
            continue
        mine = claimed is not None and claimed.id == row_id
        row = claimed if mine else claim(Outbox.id == row_id)
        if row is None:
            count(row_id, "skipped", _due_later(row_id))
            continue
        if row.method == FAN_OUT:
            work.extend(expand(row))  # delivered next, within this run's budget
            count(row_id, "expanded", None)
            continue
        outcome, retry_at = send_claimed(row)
        count(row_id, outcome, retry_at)
        # Messages to one chat go in the order they were written: rows that waited for this one
        # (see claim) are sent now, by whoever sent their predecessor, for a few seconds; then
        # the chat's next row is handed to a task of its own (a chat with a backlog drains at
        # its 1/s, and no task runs into its time limit holding a claimed row).
        chain_ends = time.monotonic() + CHAIN_BUDGET_S
        while outcome == OutboxState.SENT and row.batch_id is None:
            if time.monotonic() > chain_ends or (
                deadline is not None and time.monotonic() > deadline
            ):
                following = _next_in_chat(row.chat_id)
                if following is not None:
                    report.retry_at[following] = now()
                break
            follower = claim(Outbox.chat_id == row.chat_id, Outbox.batch_id.is_(None))
            if follower is None:
                break
            outcome, retry_at = send_claimed(follower)
            count(follower.id, outcome, retry_at)
    return report


def expand(row: Outbox) -> list[int]:
    """Write a claimed fan-out row out, one row per recipient and message, and mark it sent, in
    one transaction (a crash before the commit leaves it claimed: the relay hands it back and
    it is written out whole once); returns the new rows' ids, in order. Recipients gone,
    erased or known to have blocked the bot meanwhile are skipped."""
    users = [int(u) for u in row.payload.get("users", [])]
    messages = row.payload.get("messages", [])
    with session_scope() as session:
        found = session.execute(
            select(User.id, User.telegram_id, User.language)
            .where(
                User.id.in_(users),
                User.telegram_id.is_not(None),
                User.reachable.is_(True),
                User.erased_at.is_(None),
            )
            .order_by(User.id)
        ).all()
        at = now()
        values = [
            {
                "dedupe_key": f"{row.dedupe_key}:{n}",
                "chat_id": chat,
                "user_id": uid,
                "request_id": row.request_id,
                "actor_id": row.actor_id,
                "method": message["method"],
                "payload": {"chat_id": chat, **_in_language(message["by_lang"], lang)},
                "state": OutboxState.PENDING,
                "attempts": 0,
                "next_attempt_at": at,
            }
            for n, ((uid, chat, lang), message) in enumerate(product(found, messages))
        ]
        ids = (
            list(
                session.scalars(
                    insert(Outbox).returning(Outbox.id, sort_by_parameter_order=True), values
                )
            )
            if values
            else []
        )
        session.execute(
            update(Outbox)
            .where(Outbox.id == row.id)
            .values(state=OutboxState.SENT, sent_at=at, payload={})
        )
    log.info("outbox.expanded", outbox_id=row.id, recipients=len(found), rows=len(ids))
    return ids


def _in_language(by_lang: dict[str, dict[str, Any]], lang: str) -> dict[str, Any]:
    return by_lang.get(lang) or next(iter(by_lang.values()))


# How long one task keeps sending a chat's backlog after the row it was given.
CHAIN_BUDGET_S = 5.0


def _next_in_chat(chat_id: int) -> int | None:
    with session_scope() as session:
        return session.scalar(
            select(Outbox.id)
            .where(
                Outbox.chat_id == chat_id,
                Outbox.state == OutboxState.PENDING,
                Outbox.batch_id.is_(None),
            )
            .order_by(Outbox.id)
            .limit(1)
        )


def _due_later(row_id: int) -> datetime | None:
    """When an unclaimed row is still pending but not yet due (a retry that came a moment
    early, or a 429 seen meanwhile), when it will be; otherwise None."""
    with session_scope() as session:
        row = session.get(Outbox, row_id)
        if row is None or row.state != OutboxState.PENDING:
            return None
        if session.scalar(select(Outbox.id).where(Outbox.id == row_id, _in_order())) is not None:
            return row.next_attempt_at
        if session.scalar(select(Outbox.id).where(*_older(row, OutboxState.PENDING))):
            return None  # it waits for an older unsent row: that one's sender sends it next
        # Held by an older row being sent: its sender sends this one next, unless it died or
        # lost the database meanwhile (a PostgreSQL cut): then the hold ends, and this is when.
        claimed = session.scalar(
            select(func.max(Outbox.next_attempt_at)).where(*_older(row, OutboxState.SENDING))
        )
        if claimed is None:
            return None
        lease = _lease()
        hold = timedelta(seconds=MAX_LIMITER_WAIT_S + _SEND_TIMEOUT_S)
        return max(as_utc(row.next_attempt_at), as_utc(claimed) - lease + hold)


def _older(row: Outbox, state: OutboxState) -> list[ColumnElement[bool]]:
    """Older send* rows to the same chat in `state` (see _in_order)."""
    return [
        Outbox.chat_id == row.chat_id,
        Outbox.id < row.id,
        Outbox.state == state,
        Outbox.batch_id.is_(None),
        Outbox.method.startswith("send"),
    ]


def _lease() -> timedelta:
    """How long a claim holds a row (see claim)."""
    return timedelta(seconds=get_settings().outbox_lease_seconds)


# Made once: aliasing the table proxies every column (~1 ms a call, a tenth of a command's
# time in bench/interactive.py's profile, where every reply and follower claim built it).
_OLDER = aliased(Outbox)


def _in_order() -> ColumnElement[bool]:
    """A new message may go once no older one to its chat is still waiting to be sent:
    messages to one chat arrive in the order they were written, whichever worker sends them.
    Edits (a broadcast's progress) and broadcast rows neither wait nor hold anyone up."""
    older = _OLDER
    # A claimed row holds its chat while its sender may still be sending it: a send starts
    # within MAX_LIMITER_WAIT_S of the claim and ends within _SEND_TIMEOUT_S (then the sender
    # sends the followers itself). A row claimed longer ago belongs to a sender that died or
    # lost its database after Telegram took it: its lease would block the chat for minutes,
    # so its followers go.
    lease = _lease()
    sending_since = now() + lease - timedelta(seconds=MAX_LIMITER_WAIT_S + _SEND_TIMEOUT_S)
    return or_(
        Outbox.batch_id.is_not(None),
        ~Outbox.method.startswith("send"),
        ~exists().where(
            older.chat_id == Outbox.chat_id,
            older.id < Outbox.id,
            or_(
                older.state == OutboxState.PENDING,
                (older.state == OutboxState.SENDING) & (older.next_attempt_at > sending_since),
            ),
            older.batch_id.is_(None),
            older.method.startswith("send"),
        ),
    )


def claim_in_command(session: Session, replies: Replies) -> Outbox | None:
    """The actor's first reply, claimed in the command's own transaction when no older message
    to their chat waits (the claim's own rule): after commit it is sent at once, without a claim
    transaction of its own (one of a command's four; bench/interactive.py). A worker that dies
    between the commit and the send leaves it to the lease's end, as any claimed row."""
    first = next(
        (r for r in replies.rows if r.chat_id == replies.actor_chat_id and r.method != FAN_OUT),
        None,
    )
    if first is None:
        return None
    due = now() + _lease()
    got = session.execute(
        update(Outbox)
        .where(Outbox.id == first.id, Outbox.state == OutboxState.PENDING, _in_order())
        .values(state=OutboxState.SENDING, next_attempt_at=due, attempts=Outbox.attempts + 1)
        .returning(Outbox.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if got is None:
        return None  # an older message to the chat goes first: deliver claims this one after
    # The session's copy says what the row now is, without another UPDATE at commit.
    for name, value in (("state", OutboxState.SENDING), ("next_attempt_at", due),
                        ("attempts", first.attempts + 1)):  # fmt: skip
        set_committed_value(first, name, value)
    return first


def claim(*where: ColumnElement[bool]) -> Outbox | None:
    """Take the first due pending row matching `where` for this worker: marked `sending` with a
    lease, in a short transaction of its own. The send happens outside any transaction (it may
    wait for the rate limiter); a worker that dies holding a lease leaves a row the relay hands
    back once the lease is over."""
    with session_scope() as session:
        found = session.execute(
            # The recipient's erasure read in the same statement: no second lookup per send.
            select(Outbox, User.erased_at)
            .outerjoin(User, User.id == Outbox.user_id)
            .where(
                Outbox.state == OutboxState.PENDING,
                Outbox.next_attempt_at <= now(),
                _in_order(),
                *where,
            )
            .order_by(Outbox.id)
            .limit(1)
            .with_for_update(of=Outbox, skip_locked=True)
        ).one_or_none()
        if found is None:
            return None  # sent already, not due, or another worker has it
        row, erased_at = found
        if erased_at is not None:
            # Written by a command that raced its recipient's erasure (it had read their chat
            # id before): never sent.
            session.delete(row)
            log.info("outbox.dropped_for_erased_user", outbox_id=row.id)
            return None
        if row.attempts >= MAX_ATTEMPTS:
            # Claimed that often with no outcome recorded: its send kills or hangs the worker
            # each time (a lease that ran out hands it back). It would loop for ever.
            row.state, row.last_error = OutboxState.DEAD, "no outcome after repeated attempts"
            log.error("telegram.gave_up", outbox_id=row.id, attempts=row.attempts, unfinished=True)
            return None
        row.state, row.next_attempt_at = OutboxState.SENDING, now() + _lease()
        row.attempts += 1
        session.flush()
        session.expunge(row)
    return row


# A 429 that did not say how long to wait: everyone pauses this long.
DEFAULT_RETRY_AFTER_S = 1.0
# The longest a send waits for a slot of the shared limiter. Past that the row goes back to
# pending, due when the limiter expects a slot: a worker never sits on a claimed row while its
# lease runs out (another worker would take it and send it twice), nor past a task's time limit.
MAX_LIMITER_WAIT_S = 10.0


@dataclass(frozen=True)
class Verdict:
    """What an error means for a row: try again later (and when), or stop for good."""

    state: OutboxState  # PENDING (retry), FAILED or DEAD
    retry_after: float | None = None  # Telegram's own wait (a 429): every worker pauses
    unreachable: bool = False  # blocked or deactivated: the user's other rows are moot


def classify(error: Exception) -> Verdict:
    """Every error has a class; an unknown one is transient (backoff, attempts capped)."""
    if isinstance(error, TelegramRetryAfter):
        return Verdict(OutboxState.PENDING, retry_after=float(error.retry_after))
    if isinstance(error, TelegramAPIError) and "Too Many Requests" in error.message:
        return Verdict(
            OutboxState.PENDING, retry_after=DEFAULT_RETRY_AFTER_S
        )  # a 429 without retry_after
    if isinstance(error, TelegramForbiddenError):
        return Verdict(OutboxState.FAILED, unreachable=True)
    if isinstance(
        error, TelegramBadRequest | TelegramNotFound | TelegramEntityTooLarge | ValueError
    ):
        return Verdict(
            OutboxState.DEAD
        )  # the message itself is wrong: sending it again cannot help
    return Verdict(
        OutboxState.PENDING
    )  # 5xx, network, an HTML error page, anything not seen before


def send_outcome(error: Exception, verdict: Verdict) -> str:
    """A failed send as the metrics count it (core.metrics.SEND_OUTCOMES)."""
    if verdict.retry_after is not None:
        return "429"
    if verdict.unreachable:
        return "403"
    if verdict.state != OutboxState.PENDING:
        return "400"
    # An HTML error page (ClientDecodeError) comes from a proxy in front of the Bot API.
    return "5xx" if isinstance(error, TelegramServerError | ClientDecodeError) else "network"


def _give_back(row: Outbox, due: datetime) -> None:
    """A claimed row back to pending, unsent, its claim not counted as an attempt."""
    values = {"state": OutboxState.PENDING, "next_attempt_at": due}
    _record(row, {**values, "attempts": max(0, row.attempts - 1)}, None)


def send_claimed(row: Outbox) -> tuple[str, datetime | None]:
    """Send a claimed row and record the outcome; returns it and, to retry, when."""
    bound = log.bind(outbox_id=row.id, method=row.method, chat_id=row.chat_id)
    limiter = get_limiter(paid=bool(row.payload.get("allow_paid_broadcast")))
    lease_left = (as_utc(row.next_attempt_at) - now()).total_seconds() - _SEND_TIMEOUT_S
    # A slot under the global limits every worker shares, or the row goes back unsent.
    waited = time.perf_counter()
    try:
        got = limiter.acquire(row.chat_id, timeout=max(0.0, min(MAX_LIMITER_WAIT_S, lease_left)))
    except RedisError:
        # The limiter is out of reach: the row goes back unsent and due (not left claimed
        # until its lease runs out, minutes after Redis is back); the task retries the outage.
        _give_back(row, now())
        raise
    metrics().limiter_wait.observe(time.perf_counter() - waited)
    if not got:
        later = now() + timedelta(seconds=max(limiter.paused_for(), 1.0))
        _give_back(row, later)
        bound.debug("outbox.limiter_busy", retry_at=later.isoformat())
        return "retry", later
    result: object = None
    values: dict[str, object]
    error_text: str | None = None
    verdict: Verdict | None = None
    # The task's time is up mid-call: the row is recorded as any transient failure (it may
    # have gone: Telegram cannot say), then the task stops instead of sending the next one.
    stopped: SoftTimeLimitExceeded | None = None
    try:
        result = get_client().call(method_for(row.method, uploads.resolve(row.payload)))
    except Exception as error:
        verdict = classify(error)
        metrics().sends.labels(send_outcome(error, verdict)).inc()
        stopped = error if isinstance(error, SoftTimeLimitExceeded) else None
        error_text = f"{type(error).__name__}: {getattr(error, 'message', None) or error}"[:1000]
    if verdict is None:
        metrics().sends.labels("sent").inc()
        uploads.remember(row.payload, result)
        values = {
            "state": OutboxState.SENT,
            "sent_at": now(),
            "message_id": getattr(result, "message_id", None),
            # Delivered: its text (names, requests' words) is Telegram's now, not ours to keep.
            "payload": {},
        }
        bound.debug("telegram.sent")
    elif verdict.retry_after is not None:
        # Telegram throttles the whole bot: every worker pauses, and this row waits it out.
        limiter.pause(verdict.retry_after)
        values = {
            "state": OutboxState.PENDING,
            "next_attempt_at": now() + timedelta(seconds=verdict.retry_after),
            # Not the row's failure: a long flood wait must not use up its attempts.
            "attempts": max(0, row.attempts - 1),
        }
        bound.warning("telegram.rate_limited", retry_after=verdict.retry_after)
    elif verdict.state == OutboxState.PENDING and row.attempts >= MAX_ATTEMPTS:
        values = {"state": OutboxState.FAILED}
        bound.error("telegram.gave_up", attempts=row.attempts, error=error_text)
    elif verdict.state == OutboxState.PENDING:
        delay = timedelta(seconds=backoff_delay(row.attempts))
        values = {"state": OutboxState.PENDING, "next_attempt_at": now() + delay}
        bound.warning("telegram.transient_error", attempts=row.attempts, error=error_text)
    elif verdict.unreachable:
        values = {"state": OutboxState.FAILED}
        bound.info("telegram.forbidden", error=error_text)
    else:
        values = {"state": verdict.state}
        bound.error("telegram.bad_request", error=error_text)
    _record(row, values, error_text, unreachable=bool(verdict and verdict.unreachable))
    if stopped is not None:
        raise stopped
    state = str(values["state"])
    if state == OutboxState.PENDING:
        return "retry", values["next_attempt_at"]  # type: ignore[return-value]
    return state, None


# The Bot API client's own timeout: a send that started before the lease's end finishes by it.
_SEND_TIMEOUT_S = 30.0


_FINAL = (OutboxState.SENT, OutboxState.FAILED, OutboxState.DEAD)


def _record(
    row: Outbox, values: dict[str, object], error_text: str | None, *, unreachable: bool = False
) -> None:
    with session_scope() as session:
        # Delivered, or never will be: a row kept only to be sent goes, with its file.
        if values.get("state") in _FINAL and uploads.forget(session, row.id, row.payload):
            return
        session.execute(
            update(Outbox).where(Outbox.id == row.id).values(last_error=error_text, **values)
        )
        if unreachable:
            _mark_unreachable(session, row, error_text or "")


def due_ids(session: Session, *, limit: int) -> list[int]:
    """Pending rows whose time has come, oldest due first; broadcasts drain in their own tasks."""
    return list(
        session.scalars(
            select(Outbox.id)
            .where(
                Outbox.state == OutboxState.PENDING,
                Outbox.next_attempt_at <= now(),
                Outbox.batch_id.is_(None),
            )
            .order_by(Outbox.next_attempt_at)
            .limit(limit)
        )
    )


def release_expired_leases(session: Session, *where: ColumnElement[bool]) -> int:
    """Rows whose sender died mid-send go back to pending (they may be sent twice: the one
    case where Telegram's answer was lost)."""
    result = session.execute(
        update(Outbox)
        .where(Outbox.state == OutboxState.SENDING, Outbox.next_attempt_at < now(), *where)
        .values(state=OutboxState.PENDING, next_attempt_at=now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _mark_unreachable(session: Session, row: Outbox, reason: str) -> None:
    session.execute(update(User).where(User.telegram_id == row.chat_id).values(reachable=False))
    session.execute(
        update(Outbox)
        .where(Outbox.chat_id == row.chat_id, Outbox.state == OutboxState.PENDING)
        .values(state=OutboxState.FAILED, last_error=reason)
    )
    if row.request_id is not None and row.user_id is not None:
        # The request's history shows staff that this news never reached its recipient.
        session.add(
            RequestEvent(
                request_id=row.request_id, action=EventAction.UNDELIVERED, note=str(row.user_id)
            )
        )
