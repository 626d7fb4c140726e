"""Consistency check and repair on SQLite: a data set built as the desk builds it, plus one
planted violation of each kind (and some the history cannot decide). `plant` and the
`assert_*` helpers are shared with tests/integration/test_consistency_postgres.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from core.clock import as_utc, now
from core.domain import Action, EventAction, Status, Viewer, decide
from core.roles import Role
from db.models import Broadcast, Outbox, Request, RequestEvent, User
from tests.support.sandbox_api import SandboxAPI
from workers.upkeep import consistency
from workers.upkeep.consistency import Violation, check, repair, replay, stamp_faults

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Desk:
    """Walks requests through core.domain's status machine, setting what
    workers/desk/handlers.py sets and writing the same history events."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.clock = T0

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=7)
        return self.clock

    def event(self, r: Request, action: str, actor: User | None, **kw: str | None) -> None:
        self.s.add(
            RequestEvent(
                request_id=r.id,
                actor_id=actor.id if actor else None,
                action=action,
                created_at=self.tick(),
                **kw,
            )
        )
        self.s.flush()

    def create(self, author: User) -> Request:
        r = Request(
            author_id=author.id,
            title="Leak",
            description="…",
            location="Hall",
            priority="normal",
            status="new",
            created_at=self.tick(),
        )
        self.s.add(r)
        self.s.flush()
        self.event(r, EventAction.CREATED, author, to_status="new")
        return r

    def act(
        self, r: Request, action: Action, actor: User, *, assignee: User | None = None
    ) -> Request:
        viewer = Viewer(Role(actor.role), r.author_id == actor.id, r.assignee_id == actor.id)
        note = "why" if action is Action.REJECT else None
        old = r.status
        r.status = decide(Status(old), action, viewer, note=note).value
        at = self.clock + timedelta(minutes=7)
        if action is Action.ACCEPT:
            r.assignee_id, r.accepted_at = actor.id, at
        elif action is Action.ASSIGN and assignee is not None:
            r.assignee_id, r.accepted_at = assignee.id, r.accepted_at or at
            note = str(assignee.id)
        elif action is Action.START:
            r.started_at = at
        elif action is Action.DONE:
            r.done_at = at
        elif action in (Action.REJECT, Action.CANCEL):
            r.closed_at = at
        elif action is Action.REOPEN:
            r.done_at, r.rating = None, None
        self.event(r, action.value, actor, from_status=old, to_status=r.status, note=note)
        return r

    def walk(self, r: Request, *steps: tuple[Action, User]) -> Request:
        for action, actor in steps:
            self.act(r, action, actor)
        return r

    def rate(self, r: Request, author: User, rating: int) -> None:
        r.rating = rating
        self.event(r, EventAction.RATED, author, note=str(rating))

    def escalate(self, r: Request) -> None:
        before, r.priority = r.priority, "high"
        r.escalated_at = self.clock
        self.event(r, EventAction.ESCALATED, None, from_status=before, to_status="high")


@dataclass
class Planted:
    expected: set[tuple[str, int, bool]] = field(default_factory=set)  # kind, row id, repairable
    consistent: list[int] = field(default_factory=list)  # request ids
    ids: dict[str, int] = field(default_factory=dict)  # name -> row id
    users: dict[str, int] = field(default_factory=dict)


def plant(engine: Engine) -> Planted:
    p = Planted()
    with Session(engine) as s:
        users = {
            "author": User(telegram_id=9001, role="resident", first_name="Rita"),
            "s1": User(telegram_id=9002, role="staff", first_name="Anna"),
            "s2": User(telegram_id=9003, role="staff", first_name="Bob"),
            "admin": User(telegram_id=9004, role="admin", first_name="Boss"),
            "demoted": User(telegram_id=9005, role="staff", first_name="Dan"),
            "erased": User(role="resident", erased_at=T0),
            "erased_left": User(role="resident", erased_at=T0, username="leftover"),
        }
        s.add_all(users.values())
        s.flush()
        author, s1, s2, admin, demoted = (
            users[k] for k in ("author", "s1", "s2", "admin", "demoted")
        )
        p.users = {k: u.id for k, u in users.items()}
        d = Desk(s)
        a = Action

        def full(r: Request) -> Request:
            return d.walk(r, (a.ACCEPT, s1), (a.START, s1), (a.DONE, s1))

        # Consistent: every path the desk takes.
        fresh = d.create(author)
        done = full(d.create(author))
        d.rate(done, author, 5)
        rejected = d.walk(d.create(author), (a.ACCEPT, s2), (a.REJECT, s2))
        cancelled = d.walk(d.create(author), (a.CANCEL, author))
        again = full(d.create(author))  # reopened and taken again: keeps its first started_at
        d.rate(again, author, 4)
        d.walk(again, (a.REOPEN, author), (a.ACCEPT, s2))
        reopened = d.walk(full(d.create(author)), (a.REOPEN, author))
        escalated = d.act(d.create(author), a.ASSIGN, admin, assignee=s2)
        d.escalate(escalated)  # a priority event between transitions
        d.act(escalated, a.START, s2)
        d.escalate(escalated)  # and as the last event
        d.event(escalated, EventAction.COMMENT, author)
        reassigned = d.walk(d.create(author), (a.ACCEPT, s1), (a.START, s1))
        d.act(reassigned, a.ASSIGN, admin, assignee=s2)
        rejected_late = d.walk(full(d.create(author)), (a.REOPEN, author), (a.REJECT, s1))
        p.consistent = [
            r.id for r in (fresh, done, rejected, cancelled, again, reopened, escalated, reassigned)
        ] + [rejected_late.id]

        # Violations the history settles.
        wrong_status = d.walk(full(d.create(author)), (a.REOPEN, author))
        wrong_status.status = "in_progress"  # the history says reopened
        no_done_at = full(d.create(author))
        no_done_at.done_at = None
        later_stamp = d.act(d.create(author), a.ACCEPT, s1)
        later_stamp.done_at = T0
        lost_taker = d.act(d.create(author), a.ACCEPT, s1)
        lost_taker.assignee_id = None
        lost_assignee = d.act(d.create(author), a.ASSIGN, admin, assignee=s2)
        d.act(lost_assignee, a.START, s2)
        lost_assignee.assignee_id = None
        stray = d.walk(full(d.create(author)), (a.REOPEN, author), (a.ACCEPT, s1))
        stray.rating = 3
        # Violations it cannot settle.
        no_history = Request(
            author_id=author.id, title="x", description="…", location="Hall", status="new"
        )
        s.add(no_history)
        taken_by_demoted = d.act(d.create(author), a.ACCEPT, demoted)
        s.flush()
        demoted.role = "resident"

        t = now()
        leases = [
            Outbox(dedupe_key=f"k{n}", chat_id=9001, method="sendMessage", payload={},
                   state=state, next_attempt_at=t + delta)
            for n, (state, delta) in enumerate([
                ("sending", timedelta(hours=-1)),  # its sender died: planted
                ("sending", timedelta(minutes=2)),
                ("pending", timedelta(hours=-1)),
                ("sent", timedelta(days=-1)),
            ])
        ]  # fmt: skip
        broadcasts = [
            Broadcast(audience="residents", text="…", state=state, created_at=t - timedelta(days=1),
                      heartbeat_at=beat)
            for state, beat in [("sending", None), ("sending", t), ("done", t - timedelta(days=1))]
        ]  # fmt: skip
        s.add_all([*leases, *broadcasts])
        s.commit()
        p.ids = {
            "wrong_status": wrong_status.id,
            "no_done_at": no_done_at.id,
            "later_stamp": later_stamp.id,
            "lost_taker": lost_taker.id,
            "lost_assignee": lost_assignee.id,
            "stray": stray.id,
            "no_history": no_history.id,
            "taken_by_demoted": taken_by_demoted.id,
            "stale_lease": leases[0].id,
            "silent_broadcast": broadcasts[0].id,
        }
    i, u = p.ids, p.users
    p.expected = {
        ("history_status", i["wrong_status"], True),
        ("status_timestamps", i["no_done_at"], True),
        ("status_timestamps", i["later_stamp"], True),
        ("assignee", i["lost_taker"], True),
        ("assignee", i["lost_assignee"], True),
        ("stray_rating", i["stray"], True),
        ("stale_lease", i["stale_lease"], True),
        ("erased_identity", u["erased_left"], True),
        ("history_status", i["no_history"], False),
        ("assignee", i["taken_by_demoted"], False),
        ("broadcast_heartbeat", i["silent_broadcast"], False),
    }
    return p


def _found(violations: list[Violation]) -> set[tuple[str, int, bool]]:
    return {(v.kind, v.row_id, v.repairable) for v in violations}


def _totals(expected: set[tuple[str, int, bool]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for kind, _, _ in expected:
        totals[kind] = totals.get(kind, 0) + 1
    return totals


def _events(engine: Engine, action: str) -> dict[int, list[RequestEvent]]:
    with Session(engine) as s:
        out: dict[int, list[RequestEvent]] = {}
        for e in s.scalars(
            select(RequestEvent).where(RequestEvent.action == action).order_by(RequestEvent.id)
        ):
            out.setdefault(e.request_id, []).append(e)
        return out


def _versions(s: Session) -> dict[int, int]:
    return {rid: v for rid, v in s.execute(select(Request.id, Request.version))}


def assert_check(engine: Engine, p: Planted) -> None:
    report = check()
    assert _found(report.violations) == p.expected
    assert report.totals == _totals(p.expected)
    for v in report.violations:  # ids and field names only
        assert "Rita" not in v.detail and "leftover" not in v.detail, v
    flagged = {v.row_id for v in report.violations if v.table == "requests"}
    assert flagged.isdisjoint(p.consistent)


def assert_repair(engine: Engine, p: Planted) -> None:
    with Session(engine) as s:
        versions = _versions(s)
    report = repair()
    unrepairable = {x for x in p.expected if not x[2]}
    assert report.repaired == _totals(p.expected - unrepairable)
    assert report.found == _totals(p.expected)
    assert _found(report.violations) == unrepairable
    assert report.totals == _totals(unrepairable)
    assert _found(check().violations) == unrepairable

    i, u = p.ids, p.users
    fixed_requests = {x[1] for x in p.expected - unrepairable if x[0] in consistency.KINDS[:4]}
    repaired = _events(engine, consistency.REPAIRED)
    assert set(repaired) == fixed_requests
    assert all(len(es) == 1 for es in repaired.values())  # one kind planted on each
    assert repaired[i["wrong_status"]][0].from_status == "in_progress"
    assert repaired[i["wrong_status"]][0].to_status == "reopened"
    assert "done_at set from history" in (repaired[i["no_done_at"]][0].note or "")
    done_events = _events(engine, EventAction.DONE)
    with Session(engine) as s:
        r = {k: s.get(Request, v) for k, v in i.items() if k in p.ids}
        assert r["wrong_status"] and r["wrong_status"].status == "reopened"
        assert r["no_done_at"] and r["no_done_at"].done_at is not None
        assert as_utc(r["no_done_at"].done_at) == as_utc(
            done_events[i["no_done_at"]][-1].created_at
        )
        assert r["later_stamp"] and r["later_stamp"].done_at is None
        assert r["lost_taker"] and r["lost_taker"].assignee_id == u["s1"]
        assert r["lost_assignee"] and r["lost_assignee"].assignee_id == u["s2"]
        assert r["stray"] and r["stray"].rating is None
        for rid in fixed_requests:  # ORM updates: the optimistic version moved on
            req = s.get(Request, rid)
            assert req is not None and req.version > versions[rid]
        for rid in p.consistent:
            req = s.get(Request, rid)
            assert req is not None and req.version == versions[rid]
        lease = s.get(Outbox, i["stale_lease"])
        assert lease is not None and lease.state == "pending"
        erased = s.get(User, u["erased_left"])
        assert erased is not None and erased.username is None
        assert s.scalar(select(func.count()).where(Outbox.state == "sending")) == 1


def assert_repair_is_idempotent(engine: Engine, p: Planted) -> None:
    repair()
    with Session(engine) as s:
        events = s.scalar(select(func.count()).select_from(RequestEvent))
        versions = _versions(s)
    again = repair()
    assert again.repaired == {}
    assert _found(again.violations) == {x for x in p.expected if not x[2]}
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(RequestEvent)) == events
        assert _versions(s) == versions


# --- SQLite ------------------------------------------------------------------------------------


def test_consistent_data_has_no_violations(db: Engine) -> None:
    p = plant(db)
    with Session(db) as s:  # drop the planted violations: what is left is the desk's own data
        for r in s.scalars(select(Request).where(Request.id.not_in(p.consistent))):
            s.delete(r)
        s.execute(delete(Outbox).where(Outbox.id == p.ids["stale_lease"]))
        s.execute(delete(Broadcast).where(Broadcast.id == p.ids["silent_broadcast"]))
        left = s.get(User, p.users["erased_left"])
        assert left is not None
        left.username = None
        s.commit()
    report = check()
    assert (report.violations, report.totals) == ([], {})
    assert report.ok


def test_check_finds_exactly_the_planted_violations(db: Engine) -> None:
    assert_check(db, plant(db))


def test_repair_fixes_what_the_history_decides(db: Engine) -> None:
    assert_repair(db, plant(db))


def test_repair_twice_changes_nothing_the_second_time(db: Engine) -> None:
    assert_repair_is_idempotent(db, plant(db))


def test_limit_caps_the_list_not_the_totals(db: Engine) -> None:
    p = plant(db)
    report = check(limit_per_kind=1)
    assert report.totals == _totals(p.expected)
    kinds = [v.kind for v in report.violations]
    assert sorted(kinds) == sorted(set(kinds)) and len(kinds) == len(report.totals)


def test_replay_follows_the_desk_rules() -> None:
    at = [T0 + timedelta(minutes=n) for n in range(8)]
    events = [
        RequestEvent(action="created", to_status="new", created_at=at[0]),
        RequestEvent(action="assign", to_status="accepted", note="7", created_at=at[1]),
        RequestEvent(action="priority", from_status="normal", to_status="high", created_at=at[2]),
        RequestEvent(action="start", to_status="in_progress", created_at=at[3]),
        RequestEvent(action="done", to_status="done", created_at=at[4]),
        RequestEvent(action="rated", note="5", created_at=at[5]),
        RequestEvent(action="reopen", to_status="reopened", created_at=at[6]),
        RequestEvent(action="assign", to_status="accepted", note="8", created_at=at[7]),
    ]
    h = replay(events)
    # Assign keeps the first accepted_at; reopening clears done_at only.
    assert (h.status, h.assignee_id, h.reopened) == ("accepted", 8, True)
    assert h.stamps == {"accepted_at": at[1], "started_at": at[3], "done_at": None,
                        "closed_at": None}  # fmt: skip
    present = {s: v is not None for s, v in h.stamps.items()}
    assert stamp_faults("accepted", present, reopened=True) == ([], [])
    assert stamp_faults("accepted", present, reopened=False) == ([], ["started_at"])
    assert stamp_faults("done", present, reopened=True) == (["done_at"], [])


@pytest.mark.usefixtures("inproc_worker")
def test_the_nightly_job_tells_the_admins_only_when_something_is_wrong(
    db: Engine, sandbox: SandboxAPI
) -> None:
    from workers.maintenance_tasks import check_consistency

    with Session(db) as s:
        s.add(User(telegram_id=8401, role="admin", language="en"))
        s.commit()
    sandbox._call("POST", "/sandbox/users", {"id": 8401})
    assert check_consistency() == {}
    assert sandbox.messages(8401) == []
    with Session(db) as s:
        s.add(User(telegram_id=None, role="resident", first_name="Left", erased_at=now()))
        s.commit()
    assert check_consistency() == {"erased_identity": 1}
    (told,) = sandbox.wait_messages(8401, 1)
    assert "found 1 problem(s): erased_identity 1" in told["text"]
    check_consistency()  # again the same day: nobody is told twice
    assert len(sandbox.messages(8401)) == 1


def test_an_incremental_check_sees_what_changed_and_what_was_wrong(db: Engine) -> None:
    from sqlalchemy import update

    p = plant(db)
    whole = check()
    assert whole.since is None and whole.next is not None
    # From its cursor: the requests found wrong are looked at again, and stay reported.
    again = check(since=whole.next)
    assert _found(again.violations) == _found(whole.violations)
    cursor = again.next
    assert cursor is not None and cursor.full_at == whole.next.full_at
    # Break three consistent requests after it, each in a way another path must see: a raw
    # UPDATE (updated_at moves), an event restored with an old time (a new id), a new request.
    touched, restored = p.consistent[0], p.consistent[1]
    with Session(db) as s:
        s.execute(update(Request).where(Request.id == touched).values(status="rejected"))
        s.add(RequestEvent(request_id=restored, action="reopen", from_status="done",
                           to_status="reopened", created_at=T0))  # fmt: skip
        author = s.get(User, p.users["author"])
        assert author is not None
        fresh = Request(author_id=author.id, title="x", description="…", location="Hall",
                        status="done", created_at=now())  # fmt: skip
        s.add(fresh)
        s.commit()
        fresh_id = fresh.id
    found = {(v.kind, v.row_id) for v in check(since=cursor).violations}
    assert {(consistency.HISTORY_STATUS, rid) for rid in (touched, restored, fresh_id)} <= found
    # Repaired, they are no longer looked at: the next incremental check is clean of them.
    left = repair(since=cursor)
    assert left.next is not None
    assert set(left.next.open) == {v.row_id for v in left.violations if v.table == "requests"}


def test_the_job_sweeps_every_request_within_a_week(db: Engine) -> None:
    """A request broken without a trace (status changed, updated_at kept, no event) is found by
    the sweep: each incremental check reads a slice of all requests, a seventh at least."""
    from sqlalchemy import update

    p = plant(db)
    with Session(db) as s:  # an old site: nothing changed lately
        s.execute(update(Request).values(updated_at=T0))
        s.execute(update(RequestEvent).values(created_at=T0))
        s.commit()
    assert consistency.last_cursor() is None  # never checked: whole
    consistency.remember(check())
    since = consistency.last_cursor()
    assert since is not None and since.swept == 0
    assert consistency.last_cursor(full=True) is None  # by hand: --full
    victim = max(p.consistent)
    with Session(db) as s:
        was = s.scalar(select(Request.status).where(Request.id == victim))
        wrong = "new" if was == "cancelled" else "cancelled"
        s.execute(update(Request).where(Request.id == victim).values(status=wrong, updated_at=T0))
        s.commit()
        top = s.scalar(select(func.max(Request.id)))
    assert top is not None
    seen = []
    rounds_end = None
    for n in range(1, 8):  # checks moments apart: a seventh each, a week at one a night
        since = consistency.last_cursor()
        assert since is not None
        lo, hi = since.sweep(top, now())
        report = check(since=since)
        consistency.remember(report)
        seen.append((lo < victim <= hi, victim in {v.row_id for v in report.violations}))
        assert report.next is not None
        if report.next.swept == 0:  # every request read: the round is over
            rounds_end = n
            assert report.next.full_at == report.next.at  # every request read as of then
            break
    assert rounds_end is not None, seen
    # Found by the slice that holds it, reported from then on (until repaired).
    first = next(i for i, (held, _) in enumerate(seen) if held)
    assert [found for _, found in seen] == [i >= first for i in range(len(seen))], seen


def test_the_sweep_reads_a_share_of_the_requests_by_the_time_since_the_last_check() -> None:
    at = T0
    cursor = consistency.Since(700, 10, at, at)
    day = timedelta(days=1)
    assert cursor.sweep(700, at + timedelta(minutes=5)) == (0, 100)  # a seventh at least
    assert cursor.sweep(700, at + 2 * day) == (0, 200)  # two nights' share
    assert cursor.sweep(700, at + 30 * day) == (0, 700)  # long unchecked: everything
    later = consistency.Since(700, 10, at, at, swept=650)
    assert later.sweep(700, at + day) == (650, 700)  # the round's end
    assert later.sweep(600, at + day) == (0, 86)  # past the top (ids gone): a new round
    assert consistency.Since.from_json(later.to_json()) == later
