"""SLA escalation: each breach once (priority up, history, the right people told), the clock
restarting with the new priority's SLA; the card marks overdue and /queue lists it first."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import commands as c
from core.clock import now
from db.models import Request, RequestEvent, User
from tests.support.sandbox_api import SandboxAPI
from workers import outbox
from workers.command_tasks import run_command
from workers.commands import HANDLERS
from workers.upkeep.escalation import escalate

STAFF, STAFF2, ADMIN, RESIDENT = 8101, 8102, 8103, 8104
AT = now().replace(microsecond=0)
_updates = itertools.count(90_000)


@pytest.fixture
def desk(db: Engine, sandbox: SandboxAPI) -> dict[str, int]:
    with Session(db) as s:
        staff = User(telegram_id=STAFF, role="staff", first_name="Anna")
        s.add_all(
            [
                staff,
                User(telegram_id=STAFF2, role="staff", first_name="Bob"),
                User(telegram_id=ADMIN, role="admin", first_name="Boss"),
                resident := User(telegram_id=RESIDENT, role="resident", first_name="Rita"),
            ]
        )
        s.flush()

        def request(rid: int, priority: str, status: str, age: timedelta, **more: Any) -> None:
            s.add(
                Request(
                    id=rid,
                    author_id=resident.id,
                    title=f"Problem {rid}",
                    description="…",
                    location=f"Room {rid}",
                    priority=priority,
                    status=status,
                    created_at=AT - age,
                    **more,
                )
            )

        request(1, "urgent", "new", timedelta(hours=5))  # 4 h SLA: 1 h late, nobody has it
        request(2, "normal", "accepted", timedelta(days=4), assignee_id=staff.id)  # 1 d late
        request(3, "low", "new", timedelta(days=1))  # 7 d SLA: fine
        request(4, "normal", "done", timedelta(days=30), assignee_id=staff.id)  # closed
        request(5, "normal", "reopened", timedelta(days=10), assignee_id=staff.id)
        s.flush()
        # Reopened an hour ago: its clock restarted then.
        s.add(RequestEvent(request_id=5, action="reopen", created_at=AT - timedelta(hours=1)))
        s.commit()
        staff_id = staff.id
    for user in (STAFF, STAFF2, ADMIN, RESIDENT):
        sandbox._call("POST", "/sandbox/users", {"id": user})
    return {"staff": staff_id}


def priorities(db: Engine) -> dict[int, str]:
    with Session(db) as s:
        return {rid: p for rid, p in s.execute(select(Request.id, Request.priority))}


def test_each_breach_is_escalated_once_and_told(
    db: Engine, sandbox: SandboxAPI, desk: dict[str, int]
) -> None:
    count, notices = escalate(at=AT)
    assert count == 2
    assert priorities(db) == {1: "urgent", 2: "high", 3: "low", 4: "normal", 5: "normal"}
    assert escalate(at=AT) == (0, [])  # the same breach, run again (two beats, a redelivery)
    assert escalate(at=AT + timedelta(hours=1)) == (0, [])  # the clock restarted
    outbox.deliver(notices)
    staff2 = [m["text"] for m in sandbox.messages(STAFF2)]
    assert staff2 == [  # unassigned: every staff member; assigned: the assignee
        "⏰ Request #1 is overdue by 1 h: Problem 1\nPlace: Room 1 · assignee: —\n"
        "Priority raised: 🔥 urgent → 🔥 urgent"
    ]
    # Anna has #2 and hears of the unassigned #1 too: one message naming both, most late first.
    admin = [m["text"] for m in sandbox.messages(ADMIN)]
    assert (
        [m["text"] for m in sandbox.messages(STAFF)]
        == admin
        == [
            "⏰ 2 requests are overdue; their priority was raised:\n"
            "• #2 Problem 2: overdue by 1 d · Room 2 · Anna · normal → high\n"
            "• #1 Problem 1: overdue by 1 h · Room 1 · — · 🔥 urgent → 🔥 urgent"
        ]
    )
    assert sandbox.messages(RESIDENT) == []
    with Session(db) as s:
        event = s.scalars(select(RequestEvent).where(RequestEvent.action == "escalated")).first()
        assert event is not None and (event.from_status, event.to_status) == ("urgent", "urgent")

    # The new priority's SLA from the escalation: #2 (now high, 1 d) breaches again a day later.
    count, _ = escalate(at=AT + timedelta(days=1, minutes=1))
    assert count == 2  # #1 (urgent, 4 h) and #2
    assert priorities(db)[2] == "urgent"


def test_two_runs_at_once_escalate_each_breach_once(db: Engine, desk: dict[str, int]) -> None:
    results: list[int] = []
    runs = [threading.Thread(target=lambda: results.append(escalate(at=AT)[0])) for _ in "ab"]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sorted(results) == [0, 2]
    with Session(db) as s:
        events = s.scalars(select(RequestEvent).where(RequestEvent.action == "escalated")).all()
    assert len(events) == 2


def test_a_backlog_found_at_once_is_one_digest_per_person_within_telegrams_limit(
    db: Engine, sandbox: SandboxAPI, desk: dict[str, int]
) -> None:
    with Session(db) as s:
        author = s.scalars(select(User.id).where(User.telegram_id == RESIDENT)).one()
        s.add_all(
            Request(
                id=100 + i,
                author_id=author,
                title="A long title that takes room " + "x" * 60,
                description="…",
                location="Block " + str(i),
                priority="urgent",
                status="new",
                created_at=AT - timedelta(hours=5, minutes=i),
            )
            for i in range(120)
        )
        s.commit()
    count, notices = escalate(at=AT)
    assert count == 122
    outbox.deliver(notices)
    for user in (STAFF, STAFF2, ADMIN):
        (text,) = [m["text"] for m in sandbox.messages(user)]  # one message each
        assert len(text) <= 4096 and text.startswith("⏰ ")
        shown = text.count("\n• #")
        assert 10 < shown < 120
        heard = 122 if user != STAFF2 else 121  # Bob is not told of Anna's #2
        assert text.endswith(f"…and {heard - shown} more: /queue lists overdue requests first.")
    first = sandbox.messages(STAFF2)[0]["text"].split("\n")[1]
    assert first.startswith("• #219 ")  # the most overdue first
    with Session(db) as s:  # each request still has its own history event
        assert (
            len(s.scalars(select(RequestEvent).where(RequestEvent.action == "escalated")).all())
            == 122
        )


def run(model: type[c.Command], user: int, **fields: Any) -> None:
    command = model(
        idempotency_key=f"tg-update:{next(_updates)}",
        actor=c.Actor(user_id=user, chat_id=user),
        **fields,
    )
    run_command(command, HANDLERS[model])


def test_the_card_marks_overdue_and_the_queue_lists_it_first(
    sandbox: SandboxAPI, desk: dict[str, int]
) -> None:
    run(c.ShowQueue, STAFF)
    listing = sandbox.messages(STAFF)[-1]
    order = [b["text"] for row in listing["reply_markup"]["inline_keyboard"] for b in row]
    # Overdue first (#1 urgent, #2 normal), then by priority and age (#5 normal, #3 low).
    assert [text.split()[0] for text in order[:4]] == ["#1", "#2", "#5", "#3"], order
    run(c.ShowRequest, STAFF, request_id=2)
    assert "⏰ Overdue by 1 d" in sandbox.messages(STAFF)[-1]["text"]
    run(c.ShowRequest, STAFF, request_id=3)
    assert "Overdue" not in sandbox.messages(STAFF)[-1]["text"]


def test_the_queue_narrows_to_the_overdue_and_its_buttons_keep_that(
    sandbox: SandboxAPI, desk: dict[str, int]
) -> None:
    from core.callbacks import ListCb
    from core.domain import QueueOnly

    run(c.ShowQueue, STAFF, only=QueueOnly.OVERDUE)
    listing = sandbox.messages(STAFF)[-1]
    buttons = [b for row in listing["reply_markup"]["inline_keyboard"] for b in row]
    opened = [b["text"].split()[0] for b in buttons if b["callback_data"].startswith("rq:open")]
    assert opened == ["#1", "#2"]
    assert "⏰ overdue" in listing["text"]
    data = {b["callback_data"]: b["text"] for b in buttons}
    # Another filter keeps this one; the one in force is marked; "all" clears it.
    assert ListCb(kind="queue", page=0, status="new", only="o").pack() in data
    assert data[ListCb(kind="queue", page=0, only="o").pack()].startswith("• ")
    assert ListCb(kind="queue", page=0).pack() in data
