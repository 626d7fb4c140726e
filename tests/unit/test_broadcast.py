"""Broadcasts through the in-process worker: bulk fan-out, drain at the limit, progress,
cancel, and the faults Telegram throws at a bot (429 storms, 5xx, blocked users)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from core import commands as c
from core.roles import Role
from db.models import Broadcast, Outbox, User
from tests.support.sandbox_api import SandboxAPI
from workers.broadcasts.engine import counts
from workers.command_tasks import run_command
from workers.commands import HANDLERS

ADMIN = 9000
_updates = itertools.count(50_000)


def run(model: type[c.Command], user: int, **fields: Any) -> None:
    command = model(
        idempotency_key=f"tg-update:{next(_updates)}",
        actor=c.Actor(user_id=user, chat_id=user, username=f"u{user}"),
        **fields,
    )
    run_command(command, HANDLERS[model])


@pytest.fixture
def people(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """An admin and 12 residents who all talked to the bot."""
    monkeypatch.setenv("ADMIN_IDS", str(ADMIN))
    monkeypatch.setenv("RATE_BOT_PER_SECOND", "40")
    from core.settings import get_settings

    get_settings.cache_clear()
    residents = list(range(7001, 7013))
    with Session(db) as s:
        s.add(User(telegram_id=ADMIN, role=Role.ADMIN.value, language="en", username="boss"))
        s.add_all(User(telegram_id=r, role="resident", language="en") for r in residents)
        s.commit()
    for user in (ADMIN, *residents):
        sandbox._call("POST", "/sandbox/users", {"id": user})
    return residents


def wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def start(text: str = "Water off 10-12 <tomorrow> & Friday", audience: str = "residents") -> int:
    run(c.StartBroadcast, ADMIN, audience=audience, text=text)
    from db.session import session_scope

    with session_scope() as s:
        return int(s.scalars(select(Broadcast.id).order_by(Broadcast.id.desc())).first() or 0)


def last_text(sandbox: SandboxAPI, chat: int) -> str:
    messages = sandbox.messages(chat)
    return str(messages[-1]["text"]) if messages else ""


def received(sandbox: SandboxAPI, users: list[int], text: str) -> dict[int, int]:
    return {u: sum(1 for m in sandbox.messages(u) if m["text"] == text) for u in users}


@pytest.mark.usefixtures("inproc_worker")
def test_broadcast_reaches_everyone_once_with_progress(
    sandbox: SandboxAPI, people: list[int]
) -> None:
    text = "Water off 10-12 <tomorrow> & Friday"
    bid = start(text)
    preview = sandbox.messages(ADMIN)[-1]
    assert "Send this to 12 recipients (Residents)?" in preview["text"]
    assert text in preview["text"]  # shown literally
    assert received(sandbox, people, text) == dict.fromkeys(people, 0)  # nothing before confirm

    run(c.ConfirmBroadcast, ADMIN, broadcast_id=bid)
    wait_for(lambda: all(n == 1 for n in received(sandbox, people, text).values()))
    wait_for(lambda: "finished: 12 sent, 0 failed of 12" in last_text(sandbox, ADMIN))
    run(c.ConfirmBroadcast, ADMIN, broadcast_id=bid)  # pressing Send again starts nothing
    assert "already started or cancelled" in sandbox.messages(ADMIN)[-1]["text"]
    time.sleep(1)
    assert received(sandbox, people, text) == dict.fromkeys(people, 1)


@pytest.mark.usefixtures("inproc_worker")
def test_only_admins_broadcast(sandbox: SandboxAPI, people: list[int]) -> None:
    run(c.StartBroadcast, people[0], audience="everyone", text="spam")
    assert sandbox.messages(people[0])[-1]["text"] == "⛔ You are not allowed to do that."


def test_fan_out_is_one_insert_per_batch(
    db: Engine, people: list[int], sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.broadcasts import engine

    with Session(db) as s:
        s.add_all(User(telegram_id=100_000 + i, role="resident") for i in range(2488))
        s.commit()  # 2500 residents now
    bid = start()
    inserts: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith("INSERT INTO outbox"):
            inserts.append(statement)

    _confirm_without_worker(monkeypatch, bid)
    event.listen(db, "before_cursor_execute", count)
    try:
        assert engine.fan_out_once(bid)  # as the notifications.fan_out task runs it
    finally:
        event.remove(db, "before_cursor_execute", count)
    with Session(db) as s:
        assert s.scalar(select(func.count()).where(Outbox.batch_id == bid)) == 2500
    assert len(inserts) == 3  # 1000 + 1000 + 500 rows, not 2500 statements


def _confirm_without_worker(monkeypatch: pytest.MonkeyPatch, broadcast_id: int) -> None:
    """The admin's Confirm, its follow-up (the fan-out task) left for the test to run."""
    from workers.broadcasts import engine

    monkeypatch.setattr(engine, "fan_out_signature", lambda broadcast_id: None)
    run(c.ConfirmBroadcast, ADMIN, broadcast_id=broadcast_id)
    from db.session import session_scope

    with session_scope() as s:  # nothing written by the command itself
        assert s.scalar(select(func.count()).where(Outbox.batch_id == broadcast_id)) == 0


def test_the_fan_out_runs_once_and_not_after_a_cancel(
    db: Engine, people: list[int], sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redelivered fan-out (or the relay restarting it) writes nothing twice; a broadcast
    cancelled before its fan-out ran gets none."""
    from workers.broadcasts import engine

    bid = start()
    _confirm_without_worker(monkeypatch, bid)
    # A progress report before the rows exist (a chain of an earlier run) does not end it.
    assert engine.report_progress(bid)[0] is True
    with Session(db) as s:
        assert s.scalars(select(Broadcast.state).where(Broadcast.id == bid)).one() == "sending"
    assert engine.fan_out_once(bid) and engine.fan_out_once(bid)
    with Session(db) as s:
        assert s.scalar(select(func.count()).where(Outbox.batch_id == bid)) == len(people)
        broadcast = s.get(Broadcast, bid)
        assert broadcast is not None and broadcast.total == len(people)
    other = start()
    _confirm_without_worker(monkeypatch, other)
    run(c.CancelBroadcast, ADMIN, broadcast_id=other)
    assert not engine.fan_out_once(other)
    with Session(db) as s:
        assert s.scalar(select(func.count()).where(Outbox.batch_id == other)) == 0


def test_a_broadcast_with_nobody_to_tell_still_ends(
    db: Engine, people: list[int], sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its author erased mid-send (no progress chat left): the last report still marks it done;
    left sending, the relay would take it for stalled and restart it again and again."""
    from sqlalchemy import update

    from workers.broadcasts import engine

    bid = start()
    _confirm_without_worker(monkeypatch, bid)
    assert engine.fan_out_once(bid)
    with Session(db) as s:  # every row sent; the progress chat gone with the author
        s.execute(update(Outbox).where(Outbox.batch_id == bid).values(state="sent"))
        s.execute(update(Broadcast).where(Broadcast.id == bid).values(progress_chat_id=None))
        s.commit()
    assert engine.report_progress(bid) == (False, [])
    with Session(db) as s:
        assert s.scalars(select(Broadcast.state).where(Broadcast.id == bid)).one() == "done"
        assert engine.claim_stalled(s) == []


def test_a_relay_run_restarts_a_bounded_number_of_stalled_broadcasts(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.broadcasts import engine

    monkeypatch.setattr(engine, "STALLED_PER_RUN", 2)
    with Session(db) as s:
        stalled = [Broadcast(audience="residents", text="x", state="sending") for _ in range(3)]
        s.add_all(stalled)
        s.commit()
        ids = [b.id for b in stalled]
    for expected in (ids[:2], ids[2:], []):  # the oldest first; each claimed once (heartbeat)
        with Session(db) as s:
            assert engine.claim_stalled(s) == expected
            s.commit()


@pytest.mark.usefixtures("inproc_worker")
def test_cancel_stops_the_rest(
    sandbox: SandboxAPI, people: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("RATE_BOT_PER_SECOND", "2")  # slow enough to cancel midway
    get_settings.cache_clear()
    bid = start("slow news")
    run(c.ConfirmBroadcast, ADMIN, broadcast_id=bid)
    wait_for(lambda: sum(received(sandbox, people, "slow news").values()) >= 2)
    run(c.CancelBroadcast, ADMIN, broadcast_id=bid)
    answer = sandbox.messages(ADMIN)[-1]["text"]
    assert answer.startswith(f"📣 Broadcast #{bid} cancelled")
    sent_at_cancel = sum(received(sandbox, people, "slow news").values())
    time.sleep(2)
    # At most the rows already claimed by the two drainers (the worker's threads) still go out.
    assert sum(received(sandbox, people, "slow news").values()) <= sent_at_cancel + 2
    assert sent_at_cancel < 12


@pytest.mark.usefixtures("inproc_worker")
def test_429_storm_5xx_burst_and_a_blocked_user(
    sandbox: SandboxAPI, people: list[int], db: Engine
) -> None:
    sandbox._call("POST", f"/sandbox/users/{people[3]}/block", {})
    sandbox.fault("429", count=3, retry_after=1)
    sandbox.fault("5xx", count=3, status=502)
    bid = start("storm")
    run(c.ConfirmBroadcast, ADMIN, broadcast_id=bid)
    others = [p for p in people if p != people[3]]
    wait_for(lambda: all(n == 1 for n in received(sandbox, others, "storm").values()), 40)
    # The admin's preview drew the first 429: it and the progress message after it (in order)
    # may still be on their way when the residents have theirs.
    wait_for(lambda: "finished: 11 sent, 1 failed of 12" in last_text(sandbox, ADMIN))
    assert sandbox.stats()["rejected_429"] >= 3
    with Session(db) as s:
        assert s.scalars(select(User.reachable).where(User.telegram_id == people[3])).one() is False
        states = counts(s, bid)
    assert states == {"sent": 11, "failed": 1}


def test_paid_broadcast_marks_its_messages(
    db: Engine, people: list[int], sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings
    from workers.broadcasts import engine

    monkeypatch.setenv("PAID_BROADCAST", "true")
    get_settings.cache_clear()
    bid = start()
    _confirm_without_worker(monkeypatch, bid)
    engine.fan_out_once(bid)
    with Session(db) as s:
        payloads = s.scalars(select(Outbox.payload).where(Outbox.batch_id == bid)).all()
    assert payloads and all(p["allow_paid_broadcast"] is True for p in payloads)


@pytest.fixture(autouse=True)
def _settings_cache() -> Iterator[None]:
    yield
    from core.settings import get_settings

    get_settings.cache_clear()


def test_broadcast_asks_an_admin_for_the_audience_and_refuses_others_at_once(
    sandbox: SandboxAPI, people: list[int]
) -> None:
    run(c.BeginBroadcast, people[0])
    assert [m["text"] for m in sandbox.messages(people[0])] == [
        "⛔ You are not allowed to do that."
    ]
    run(c.BeginBroadcast, ADMIN)
    question = sandbox.messages(ADMIN)[-1]
    assert question["text"] == "Who should get the message?"
    buttons = [b["callback_data"] for b in question["reply_markup"]["inline_keyboard"][0]]
    assert buttons == ["bc:aud:0:residents", "bc:aud:0:staff", "bc:aud:0:everyone"]
