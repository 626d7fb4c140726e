"""Consistency: the invariants that tie a request's status to its timestamps, assignee, rating
and history, and those of the outbox, broadcasts and erased users; checked, and repaired where
the history can decide.

Detection is one SQL query per invariant returning only the violating rows (ids and what is
needed to describe them), capped per kind with the kind's total counted by a window, so a
million requests are never loaded into Python. Only the listed requests' events are read, to
tell what the history says.

Repair takes the history as the source of truth: the status follows the last transition event,
missing timestamps and a missing assignee are derived from the events (replayed with the desk's
own rules), timestamps of later states and stray ratings are cleared; each fix appends a
corrective `repaired` event and is logged. It works in batches, each a short transaction of its
own, every row re-checked under its lock, so a concurrent command is never overwritten. What
the history cannot decide is left reported.

A check can be incremental (`since`, the cursor the previous check left): the request
invariants are then checked only on requests that may have changed since (newer ids, updated or
with events after it, by time and by id, so that a late commit or a restored row with an old
time are both seen) and on those found wrong last time, which stay reported until they are
fixed. The outbox, broadcast and user invariants are cheap and always checked whole.

What changes without leaving a trace (a raw UPDATE that kept updated_at, a restore) is caught by
a sweep: each incremental check also reads the next slice of all requests in id order, a share
proportional to the time since the previous check and at least SWEEP_MIN_SHARE, so that every
request is read within FULL_EVERY (the nightly default: a seventh a night), so no scheduled run
reads 1M requests at once. `--full` still checks everything at once, by hand, the range of
requests read in RANGE_PARTS parts on connections of their own (bench/maintenance.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Select,
    Table,
    and_,
    exists,
    false,
    func,
    or_,
    select,
    text,
    union,
    update,
)
from sqlalchemy.orm import Session, aliased

from core.clock import as_utc, now
from core.domain import EventAction, Status
from core.logging import get_logger
from core.roles import Role
from core.states import BroadcastState, OutboxState
from db.models import Broadcast, Outbox, Request, RequestEvent, User
from db.session import session_scope
from workers.broadcasts.engine import DRAIN_SILENCE
from workers.upkeep import jobs

log = get_logger(__name__)

BATCH = 100

# Not yet in core.domain.EventAction (no CHECK constraint on request_events.action holds it).
REPAIRED = EventAction.REPAIRED.value

STATUS_TIMESTAMPS = "status_timestamps"
ASSIGNEE = "assignee"
HISTORY_STATUS = "history_status"
STRAY_RATING = "stray_rating"
STALE_LEASE = "stale_lease"
BROADCAST_HEARTBEAT = "broadcast_heartbeat"
ERASED_IDENTITY = "erased_identity"
KINDS = (
    HISTORY_STATUS,
    STATUS_TIMESTAMPS,
    ASSIGNEE,
    STRAY_RATING,
    STALE_LEASE,
    BROADCAST_HEARTBEAT,
    ERASED_IDENTITY,
)

# The relay releases expired leases and restarts silent drains every 30 s: only what outlives
# that by minutes means nothing is taking care of it (a check is no place for races with it).
LEASE_GRACE = timedelta(minutes=5)
HEARTBEAT_GRACE = DRAIN_SILENCE + timedelta(minutes=5)

# Events that move a status; priority and escalated events hold priorities in from/to_status.
TRANSITION_ACTIONS = tuple(
    a.value
    for a in (
        EventAction.CREATED,
        EventAction.ACCEPT,
        EventAction.ASSIGN,
        EventAction.START,
        EventAction.DONE,
        EventAction.REJECT,
        EventAction.CANCEL,
        EventAction.REOPEN,
        EventAction.CLOSE,
    )
)
STATUSES = frozenset(s.value for s in Status)
REQUEST_KINDS = (HISTORY_STATUS, STATUS_TIMESTAMPS, ASSIGNEE, STRAY_RATING)
STAFF_ROLES = (Role.STAFF.value, Role.ADMIN.value)
ASSIGNED_STATUSES = (Status.ACCEPTED.value, Status.IN_PROGRESS.value)
RATED_STATUSES = (
    Status.DONE.value,
    Status.CLOSED.value,
    Status.REJECTED.value,
    Status.CANCELLED.value,
)
STAMPS = ("accepted_at", "started_at", "done_at", "closed_at")
IDENTITY = ("telegram_id", "username", "first_name", "last_name")

# What workers/desk/handlers.py leaves on a request in each status: the stamps it must have
# and those of states it cannot have reached (rejected comes from new, accepted, in progress
# or reopened, so its accepted_at and started_at may be either).
REQUIRED: dict[str, tuple[str, ...]] = {
    Status.NEW: (),
    Status.ACCEPTED: ("accepted_at",),
    Status.IN_PROGRESS: ("accepted_at", "started_at"),
    Status.DONE: ("accepted_at", "started_at", "done_at"),
    Status.REOPENED: ("accepted_at", "started_at"),
    Status.REJECTED: ("closed_at",),
    Status.CANCELLED: ("closed_at",),
    Status.CLOSED: ("accepted_at", "started_at", "done_at", "closed_at"),
}
FORBIDDEN: dict[str, tuple[str, ...]] = {
    Status.NEW: ("accepted_at", "started_at", "done_at", "closed_at"),
    # started_at only if reopened once: reopening keeps the first round's started_at.
    Status.ACCEPTED: ("started_at", "done_at", "closed_at"),
    Status.IN_PROGRESS: ("done_at", "closed_at"),
    Status.DONE: ("closed_at",),
    Status.REOPENED: ("done_at", "closed_at"),
    Status.REJECTED: ("done_at",),
    Status.CANCELLED: ("accepted_at", "started_at", "done_at"),
    Status.CLOSED: (),
}


# A transaction may commit after a check that started later than its statements' now(): rows
# changed this long before a check's start are looked at again by the next one. Tasks end
# within their 45 s hard time limit, commands' transactions within seconds.
SLACK = timedelta(minutes=5)
FULL_EVERY = timedelta(days=7)  # every request read by the sweep at least this often
SWEEP_MIN_SHARE = 1 / 7
OPEN_LIMIT = 10_000  # requests found wrong that the next check looks at again
RANGE_PARTS = 2  # a large range of requests is read on this many connections at once
SPLIT_FROM = 50_000  # requests: a smaller range is read in one part


@dataclass(frozen=True)
class Since:
    """A check's cursor: the highest request and event ids and the time it started with, and the
    requests it found wrong (see the module's docstring)."""

    request_id: int
    event_id: int
    at: datetime
    full_at: datetime  # when every request was last read: a whole check, or the sweep's last round
    open: tuple[int, ...] = ()
    swept: int = 0  # the sweep's round has read the requests up to this id

    def sweep(self, top: int, at: datetime) -> tuple[int, int]:
        """The requests (lo, hi] a check from this cursor reads whole (see the module's
        docstring); `top` is the highest request id, `at` the check's start."""
        elapsed = (as_utc(at) - as_utc(self.at)) / FULL_EVERY
        share = min(1.0, max(SWEEP_MIN_SHARE, elapsed))
        lo = self.swept if self.swept < top else 0
        return lo, min(top, lo + math.ceil(share * top))

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "event_id": self.event_id,
            "at": self.at.isoformat(),
            "full_at": self.full_at.isoformat(),
            "open": list(self.open),
            "swept": self.swept,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Since:
        return cls(
            int(data["request_id"]),
            int(data["event_id"]),
            datetime.fromisoformat(data["at"]),
            datetime.fromisoformat(data["full_at"]),
            tuple(int(i) for i in data.get("open", ())),
            int(data.get("swept", 0)),
        )


@dataclass(frozen=True)
class Violation:
    kind: str
    table: str  # requests | outbox | broadcasts | users
    row_id: int
    detail: str  # ids, statuses and field names only: never personal data
    repairable: bool


@dataclass
class Report:
    """The database's state: `violations` (capped per kind) and `totals` (kind -> how many).
    After `repair`, that state is what is left; `repaired` counts the fixes and `found` the
    totals before them."""

    violations: list[Violation]
    totals: dict[str, int]
    repaired: dict[str, int] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)
    since: Since | None = None  # the cursor it started from (None: a whole check)
    next: Since | None = None  # the cursor for the next check

    @property
    def ok(self) -> bool:
        return not self.totals


# --- The history, replayed ---------------------------------------------------------------------


@dataclass
class History:
    """What a request's events say, by the desk's rules (workers/desk/handlers.py)."""

    status: str | None = None  # the last transition's to_status
    stamps: dict[str, datetime | None] = field(default_factory=lambda: dict.fromkeys(STAMPS))
    assignee_id: int | None = None  # named by the last accept or assign
    reopened: bool = False


def replay(events: Iterable[RequestEvent]) -> History:
    """Events in id order."""
    h = History()
    for e in events:
        if e.action not in TRANSITION_ACTIONS or e.to_status is None:
            continue
        h.status, at = e.to_status, e.created_at
        if e.action == EventAction.ACCEPT:
            h.stamps["accepted_at"], h.assignee_id = at, e.actor_id
        elif e.action == EventAction.ASSIGN:
            h.stamps["accepted_at"] = h.stamps["accepted_at"] or at
            h.assignee_id = int(e.note) if e.note and e.note.isdigit() else None
        elif e.action == EventAction.START:
            h.stamps["started_at"] = at
        elif e.action == EventAction.DONE:
            h.stamps["done_at"] = at
        elif e.action in (EventAction.REJECT, EventAction.CANCEL, EventAction.CLOSE):
            h.stamps["closed_at"] = at
        elif e.action == EventAction.REOPEN:
            h.stamps["done_at"], h.reopened = None, True
    return h


def stamp_faults(
    status: str, present: Mapping[str, bool], reopened: bool
) -> tuple[list[str], list[str]]:
    """(missing, extra) timestamps of a request in `status`; the Python twin of _stamps_clause."""
    missing = [s for s in REQUIRED.get(status, ()) if not present[s]]
    extra = [s for s in FORBIDDEN.get(status, ()) if present[s]]
    if status == Status.ACCEPTED and reopened and "started_at" in extra:
        extra.remove("started_at")
    return missing, extra


def _history(session: Session, request_ids: Sequence[int]) -> dict[int, History]:
    events: dict[int, list[RequestEvent]] = {i: [] for i in request_ids}
    for chunk in _chunks(request_ids, 500):
        for e in session.scalars(
            select(RequestEvent)
            .where(RequestEvent.request_id.in_(chunk), RequestEvent.action.in_(TRANSITION_ACTIONS))
            .order_by(RequestEvent.request_id, RequestEvent.id)
        ):
            events[e.request_id].append(e)
    return {i: replay(es) for i, es in events.items()}


def _staff(session: Session, user_ids: Iterable[int | None]) -> set[int]:
    ids = sorted({i for i in user_ids if i is not None})
    found: set[int] = set()
    for chunk in _chunks(ids, 500):
        found.update(
            session.scalars(select(User.id).where(User.id.in_(chunk), User.role.in_(STAFF_ROLES)))
        )
    return found


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Detection: one query per invariant ------------------------------------------------------


def _reopened(request_id: Any) -> ColumnElement[bool]:
    return exists().where(
        RequestEvent.request_id == request_id, RequestEvent.action == EventAction.REOPEN
    )


def _stamps_clause() -> ColumnElement[bool]:
    cases = []
    for status in Status:
        wrong = [getattr(Request, s).is_(None) for s in REQUIRED[status]]
        for s in FORBIDDEN[status]:
            present = getattr(Request, s).is_not(None)
            if status is Status.ACCEPTED and s == "started_at":
                present = and_(present, ~_reopened(Request.id))
            wrong.append(present)
        if wrong:
            cases.append(and_(Request.status == status.value, or_(*wrong)))
    return or_(*cases)


def _last_transition() -> ColumnElement[bool]:
    """True where a request's last transition event does not lead to its status (or there is
    none): each request's last one read by key from (request_id, id) INCLUDE (action,
    to_status), from the index alone on PostgreSQL (migration 0017). Ids grow with time and a
    request's events are written under its row lock, so the highest is the last. Over a range
    of 500,000 requests 1.2-1.5 s, against 1.7-1.9 s for one merge-joined pass over their
    events grouped by request, and DISTINCT ON 1.8-2.0 s; for the incremental check's
    candidates, a few probes."""
    e = aliased(RequestEvent)
    last = (
        select(e.to_status)
        .where(
            e.request_id == Request.id,
            e.action.in_(TRANSITION_ACTIONS),
            e.to_status.is_not(None),
        )
        .order_by(e.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return last.is_distinct_from(Request.status)


# The requests an incremental check looks at, gathered first: a few thousand ids the
# invariants' queries then read by key, instead of filtering a join over every request.
_CANDIDATES = Table(
    "consistency_candidates",
    MetaData(),
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def _gather(session: Session, since: Since, sweep: tuple[int, int]) -> int:
    """Fill the candidates' table (this transaction's) with the requests that may have changed
    since `since` (see the module's docstring), outside the sweep's slice (read as a range, in
    one pass: a seventh of 1M requests by key took three times as long); returns how many."""
    conn = session.connection()
    _CANDIDATES.create(conn, checkfirst=True)
    conn.execute(_CANDIDATES.delete())
    after = since.at - SLACK
    parts = [
        select(Request.id).where(Request.id > since.request_id),
        select(Request.id).where(Request.updated_at >= after),
        select(RequestEvent.request_id).where(RequestEvent.id > since.event_id),
        select(RequestEvent.request_id).where(RequestEvent.created_at >= after),
    ]
    if since.open:
        parts.append(select(Request.id).where(Request.id.in_(since.open)))
    changed = union(*parts).subquery()
    lo, hi = sweep
    conn.execute(
        _CANDIDATES.insert().from_select(
            ["id"], select(changed.c.id).where(~changed.c.id.between(lo + 1, hi))
        )
    )
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE consistency_candidates"))  # the planner's row count
    return int(conn.scalar(select(func.count()).select_from(_CANDIDATES)) or 0)


def _queries(at: datetime, since: Since | None = None) -> dict[str, Select[Any]]:
    queries = _all_queries(at)
    if since is not None:
        changed = Request.id.in_(select(_CANDIDATES.c.id))
        for kind in REQUEST_KINDS:
            queries[kind] = queries[kind].where(changed)
    return queries


def _all_queries(at: datetime, within: tuple[int, int] | None = None) -> dict[str, Select[Any]]:
    """Every invariant's query; with `within` (lo, hi], the request invariants' alone, on the
    requests of that id range."""
    total = func.count().over().label("total")
    assignee = aliased(User)
    queries = {
        HISTORY_STATUS: select(Request.id, Request.status, total)
        .where(_last_transition())
        .order_by(Request.id),
        STATUS_TIMESTAMPS: select(
            Request.id,
            Request.status,
            *(getattr(Request, s).is_not(None) for s in STAMPS),
            # Evaluated only for the rows returned.
            _reopened(Request.id),
            total,
        )
        .where(_stamps_clause())
        .order_by(Request.id),
        ASSIGNEE: select(Request.id, Request.status, Request.assignee_id, assignee.role, total)
        .select_from(Request)
        .outerjoin(assignee, assignee.id == Request.assignee_id)
        .where(
            Request.status.in_(ASSIGNED_STATUSES),
            or_(assignee.id.is_(None), assignee.role.not_in(STAFF_ROLES)),
        )
        .order_by(Request.id),
        STRAY_RATING: select(Request.id, Request.status, total)
        .where(Request.rating.is_not(None), Request.status.not_in(RATED_STATUSES))
        .order_by(Request.id),
        STALE_LEASE: select(Outbox.id, Outbox.next_attempt_at, total)
        .where(Outbox.state == OutboxState.SENDING, Outbox.next_attempt_at < at - LEASE_GRACE)
        .order_by(Outbox.id),
        BROADCAST_HEARTBEAT: select(Broadcast.id, Broadcast.heartbeat_at, total)
        .where(
            Broadcast.state == BroadcastState.SENDING,
            func.coalesce(Broadcast.heartbeat_at, Broadcast.created_at) < at - HEARTBEAT_GRACE,
        )
        .order_by(Broadcast.id),
        # Whether each field is set, never its value.
        ERASED_IDENTITY: select(
            User.id,
            *(getattr(User, f).is_not(None) for f in IDENTITY),
            total,
        )
        .where(User.erased_at.is_not(None), or_(*(getattr(User, f).is_not(None) for f in IDENTITY)))
        .order_by(User.id),
    }
    if within is None:
        return queries
    lo, hi = within
    return {k: queries[k].where(Request.id > lo, Request.id <= hi) for k in REQUEST_KINDS}


def _describe(session: Session, rows: dict[str, Sequence[Any]]) -> list[Violation]:
    """Each violation with whether repair can settle it (the history must decide the status
    first: when it says another status, repair sets that one and judges by it)."""
    request_ids = sorted(
        {r[0] for k in (HISTORY_STATUS, STATUS_TIMESTAMPS, ASSIGNEE, STRAY_RATING) for r in rows[k]}
    )
    histories = _history(session, request_ids)
    staff = _staff(session, (h.assignee_id for h in histories.values()))
    out: list[Violation] = []
    for rid, status, _ in rows[HISTORY_STATUS]:
        last_status = histories[rid].status
        if last_status is None:
            out.append(
                _v(HISTORY_STATUS, "requests", rid, f"{status}: no transition in history", False)
            )
        else:
            ok = last_status in STATUSES
            detail = f"status {status}, history says {last_status}"
            out.append(_v(HISTORY_STATUS, "requests", rid, detail, ok))
    for rid, status, *flags, reopened, _ in rows[STATUS_TIMESTAMPS]:
        present = dict(zip(STAMPS, flags, strict=True))
        missing, extra = stamp_faults(status, present, reopened)
        target = _decided(histories[rid])
        plan = None if target is None else _plan_stamps(target, present, histories[rid])
        parts = [f"{status}:"]
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("has " + ", ".join(extra))
        out.append(_v(STATUS_TIMESTAMPS, "requests", rid, " ".join(parts), plan is not None))
    for rid, status, assignee_id, role, _ in rows[ASSIGNEE]:
        if assignee_id is None:
            detail = f"{status} without assignee"
        elif role is None:
            detail = f"{status}, assignee {assignee_id} does not exist"
        else:
            detail = f"{status}, assignee {assignee_id} is {role}"
        history, named = histories[rid], histories[rid].assignee_id
        target = _decided(history)
        ok = target is not None and (
            target not in ASSIGNED_STATUSES or (named in staff and named != assignee_id)
        )
        out.append(_v(ASSIGNEE, "requests", rid, detail, ok))
    for rid, status, _ in rows[STRAY_RATING]:
        ok = _decided(histories[rid]) is not None
        out.append(_v(STRAY_RATING, "requests", rid, f"rating on a {status} request", ok))
    for oid, lease, _ in rows[STALE_LEASE]:
        out.append(_v(STALE_LEASE, "outbox", oid, f"sending, lease ended {_iso(lease)}"))
    for bid, beat, _ in rows[BROADCAST_HEARTBEAT]:
        what = "no heartbeat" if beat is None else f"last heartbeat {_iso(beat)}"
        out.append(_v(BROADCAST_HEARTBEAT, "broadcasts", bid, f"sending, {what}", False))
    for uid, *flags, _ in rows[ERASED_IDENTITY]:
        left = [f for f, set_ in zip(IDENTITY, flags, strict=True) if set_]
        out.append(_v(ERASED_IDENTITY, "users", uid, "erased, still has " + ", ".join(left)))
    return out


def _v(kind: str, table: str, row_id: int, detail: str, repairable: bool = True) -> Violation:
    return Violation(kind, table, row_id, detail, repairable)


def _decided(history: History) -> str | None:
    """The status the history decides, if it does."""
    return history.status if history.status in STATUSES else None


def _iso(at: datetime) -> str:
    return at.replace(microsecond=0).isoformat()


def _plan_stamps(
    status: str, present: Mapping[str, bool], history: History
) -> dict[str, datetime | None] | None:
    """The changes that make the stamps fit `status`, or None when the history cannot decide:
    it must agree with the status (repair sets the status first) and hold each missing stamp."""
    if history.status != status:
        return None
    missing, extra = stamp_faults(status, present, history.reopened)
    if any(history.stamps[s] is None for s in missing):
        return None
    return {**{s: history.stamps[s] for s in missing}, **dict.fromkeys(extra)}


def _start(session: Session, since: Since | None) -> Since:
    """Where a check starts: read before its queries, so what commits meanwhile is next time's."""
    at = as_utc(session.scalar(select(func.now())) or now())
    return Since(
        int(session.scalar(select(func.coalesce(func.max(Request.id), 0))) or 0),
        int(session.scalar(select(func.coalesce(func.max(RequestEvent.id), 0))) or 0),
        at,
        since.full_at if since is not None else at,
    )


def _detect(
    session: Session, at: datetime, limit: int, since: Since | None, sweep: tuple[int, int]
) -> Report:
    """`sweep` (lo, hi]: the requests read whole (every request in a whole check); with `since`,
    the request invariants also on the candidates outside it."""
    rows: dict[str, Sequence[Any]] = dict.fromkeys(KINDS, ())
    totals: dict[str, int] = {}
    queries = _queries(at, since)
    if since is None:
        queries = {k: q for k, q in queries.items() if k not in REQUEST_KINDS}
    else:
        candidates = _gather(session, since, sweep)
        log.info("consistency.incremental", candidates=candidates, swept_from=sweep[0],
                 swept_to=sweep[1])  # fmt: skip
    for kind, query in queries.items():
        rows[kind] = session.execute(query.limit(limit)).all()
        if rows[kind]:
            totals[kind] = int(rows[kind][0][-1])
    # The range: no request in both (see _gather).
    for part in _read_range(session, at, sweep, limit):
        for kind, more in part.items():
            merged = sorted([*rows[kind], *more], key=lambda r: int(r[0]))
            rows[kind] = merged[:limit]
            if more:
                totals[kind] = totals.get(kind, 0) + int(more[0][-1])
    return Report(_describe(session, rows), totals)


def _read_range(
    session: Session, at: datetime, within: tuple[int, int], limit: int
) -> list[dict[str, Sequence[Any]]]:
    """The request invariants' rows over the requests (lo, hi], by kind, in one or more parts.
    On PostgreSQL a range of more than SPLIT_FROM requests is cut into RANGE_PARTS read at once,
    each on a connection of its own: the invariants' reads are CPU-bound in the database's
    backend, one core each (1M requests on 2 cores: 5.4 s on one connection, 3.4 s in two
    parts, bench/maintenance.py). Each part is a transaction of its own: a check reads each request
    once, not all of them at one instant (neither does the incremental one)."""
    lo, hi = within
    if hi <= lo:
        return []
    parts = RANGE_PARTS if session.get_bind().dialect.name == "postgresql" else 1
    if hi - lo < SPLIT_FROM or parts < 2:
        return [_read_part(session, at, within, limit)]
    step = math.ceil((hi - lo) / parts)
    cuts = [(a, min(hi, a + step)) for a in range(lo, hi, step)]

    def read(cut: tuple[int, int]) -> dict[str, Sequence[Any]]:
        with session_scope() as own:
            return _read_part(own, at, cut, limit)

    with ThreadPoolExecutor(max_workers=len(cuts), thread_name_prefix="consistency") as pool:
        return list(pool.map(read, cuts))


def _read_part(
    session: Session, at: datetime, within: tuple[int, int], limit: int
) -> dict[str, Sequence[Any]]:
    return {
        kind: session.execute(query.limit(limit)).all()
        for kind, query in _all_queries(at, within=within).items()
    }


def check(*, limit_per_kind: int = 1000, since: Since | None = None) -> Report:
    """Every invariant, read only (of the requests that may have changed, with `since`); at most
    `limit_per_kind` violations listed per kind."""
    with session_scope() as session:
        start = _start(session, since)
        top = start.request_id
        sweep = (0, top) if since is None else since.sweep(top, start.at)
        report = _detect(session, now(), limit_per_kind, since, sweep)
    report.since = since
    wrong = sorted({v.row_id for v in report.violations if v.table == "requests"})
    round_done = sweep[1] >= top  # every request read: by a whole check, or the sweep's round
    report.next = Since(
        start.request_id,
        start.event_id,
        start.at,
        start.at if round_done else start.full_at,
        tuple(wrong[:OPEN_LIMIT]),
        0 if round_done else sweep[1],
    )
    report.found = dict(report.totals)
    if report.totals:
        log.warning("consistency.violations", **report.totals)
    else:
        log.info("consistency.clean")
    return report


JOB = "maintenance.consistency"


def last_cursor(*, full: bool = False) -> Since | None:
    """Where the next check starts: after the last one (with the sweep's next slice), or whole
    (None) when asked or when there was none."""
    saved = None if full else jobs.cursor(JOB)
    return None if saved is None else Since.from_json(saved)


def remember(report: Report) -> None:
    """The next check starts where this one did (and looks at what it found wrong again)."""
    if report.next is not None:
        jobs.save_cursor(JOB, report.next.to_json())


# --- Repair ------------------------------------------------------------------------------------


def repair(*, limit_per_kind: int = 1000, since: Since | None = None) -> Report:
    """Fix what the history can decide among the violations `check` lists, in batches; returns
    what is left (a fresh check from the same cursor), with what was found and what was fixed."""
    found = check(limit_per_kind=limit_per_kind, since=since)
    repaired: dict[str, int] = {}
    by_table: dict[str, list[int]] = {}
    for v in found.violations:
        if v.repairable:
            by_table.setdefault(v.table, []).append(v.row_id)
    request_ids = sorted(set(by_table.get("requests", [])))
    for chunk in _chunks(request_ids, BATCH):
        with session_scope() as session:
            for kind in _repair_requests(session, chunk):
                repaired[kind] = repaired.get(kind, 0) + 1
    for chunk in _chunks(sorted(set(by_table.get("outbox", []))), BATCH):
        with session_scope() as session:
            if n := _release_leases(session, chunk):
                repaired[STALE_LEASE] = repaired.get(STALE_LEASE, 0) + n
    for chunk in _chunks(sorted(set(by_table.get("users", []))), BATCH):
        with session_scope() as session:
            if n := _erase_leftovers(session, chunk):
                repaired[ERASED_IDENTITY] = repaired.get(ERASED_IDENTITY, 0) + n
    left = check(limit_per_kind=limit_per_kind, since=since)
    left.repaired, left.found = repaired, found.totals
    return left


def _repair_requests(session: Session, request_ids: Sequence[int]) -> list[str]:
    """Re-check a chunk of requests under their locks and fix them; returns the kinds fixed.
    The chunk is locked, its history and its staff read, and its fixes written, a statement
    each (bar one UPDATE per changed request)."""
    requests = session.scalars(
        select(Request).where(Request.id.in_(request_ids)).order_by(Request.id).with_for_update()
    ).all()
    histories = _history(session, [r.id for r in requests])
    staff = _staff(
        session,
        [r.assignee_id for r in requests] + [h.assignee_id for h in histories.values()],
    )
    fixed = [
        kind
        for request in requests
        for kind in _repair_request(session, request, histories[request.id], staff)
    ]
    session.flush()
    return fixed


def _repair_request(
    session: Session, request: Request, history: History, staff: set[int]
) -> list[str]:
    """Fix one locked request by its history; returns the kinds fixed."""
    request_id = request.id
    fixed: list[str] = []

    def fix(kind: str, note: str, before: str) -> None:
        session.add(
            RequestEvent(
                request_id=request_id,
                action=REPAIRED,
                from_status=before,
                to_status=request.status,
                note=f"{kind}: {note}",
            )
        )
        log.warning("consistency.repaired", kind=kind, request_id=request_id, fix=note)
        fixed.append(kind)

    # The status first: the other invariants depend on it, and none is fixed on a status the
    # history does not confirm.
    status, decided = request.status, _decided(history)
    if decided is None:
        return []
    if decided != status:
        request.status = decided
        fix(HISTORY_STATUS, f"status {status} -> {decided} as the history says", status)

    present = {s: getattr(request, s) is not None for s in STAMPS}
    missing, extra = stamp_faults(request.status, present, history.reopened)
    plan = _plan_stamps(request.status, present, history) if missing or extra else None
    if plan:
        for stamp, value in plan.items():
            setattr(request, stamp, value)
        parts = [f"{s} set from history" for s in missing] + [f"{s} cleared" for s in extra]
        fix(STATUS_TIMESTAMPS, "; ".join(parts), request.status)

    if request.status in ASSIGNED_STATUSES:
        named = history.assignee_id
        if request.assignee_id not in staff and named is not None and named in staff:
            before = request.assignee_id
            request.assignee_id = named
            fix(ASSIGNEE, f"assignee {before} -> {named} from history", request.status)

    if request.rating is not None and request.status not in RATED_STATUSES:
        request.rating = None
        fix(STRAY_RATING, f"rating cleared on a {request.status} request", request.status)
    return fixed


def _release_leases(session: Session, ids: Sequence[int]) -> int:
    # As workers.outbox.release_expired_leases, re-checked under the rows' locks (a sender that
    # took a row meanwhile holds a fresh lease and keeps it).
    expired = list(
        session.scalars(
            select(Outbox.id)
            .where(
                Outbox.id.in_(ids),
                Outbox.state == OutboxState.SENDING,
                Outbox.next_attempt_at < now(),
            )
            .with_for_update(skip_locked=True)
        )
    )
    if expired:
        session.execute(
            update(Outbox)
            .where(Outbox.id.in_(expired))
            .values(state=OutboxState.PENDING, next_attempt_at=now())
        )
    for oid in expired:
        log.warning("consistency.repaired", kind=STALE_LEASE, outbox_id=oid)
    return len(expired)


def _erase_leftovers(session: Session, ids: Sequence[int]) -> int:
    leftover = or_(false(), *(getattr(User, f).is_not(None) for f in IDENTITY))
    users = list(
        session.scalars(
            select(User.id)
            .where(User.id.in_(ids), User.erased_at.is_not(None), leftover)
            .with_for_update()
        )
    )
    if users:
        session.execute(update(User).where(User.id.in_(users)).values(dict.fromkeys(IDENTITY)))
    for uid in users:
        log.warning("consistency.repaired", kind=ERASED_IDENTITY, user_id=uid)
    return len(users)
