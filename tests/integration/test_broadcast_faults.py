"""A broadcast through several real worker processes on PostgreSQL and Redis while Telegram
(the sandbox) throws 429s, 5xx, dropped connections and blocked users at it, and one worker is
killed with SIGKILL in the middle: every reachable chat gets the message exactly once."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from celery import Celery
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core import commands as c
from core.callbacks import BroadcastCb
from db.models import Broadcast, User
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI
from workers.broadcasts.engine import counts as outbox_counts

ADMIN = 4242
RESIDENTS = list(range(800_001, 800_151))  # 150 chats
BLOCKED = RESIDENTS[10:12]
TEXT = "Heating test on Monday 9:00-11:00"


def wait_for(
    what: str,
    predicate: Callable[[], bool],
    timeout: float = 60,
    every: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if every:
            every()
        time.sleep(0.5)


def test_broadcast_with_faults_and_a_killed_worker(
    procs: Processes, live_sandbox: SandboxAPI, pg_url: str, broker_url: str
) -> None:
    engine = create_engine(pg_url)
    with Session(engine) as s:
        s.add(User(telegram_id=ADMIN, role="admin", language="en", username="boss"))
        s.add_all(User(telegram_id=r, role="resident", language="en") for r in RESIDENTS)
        s.commit()
    for user in (ADMIN, *RESIDENTS):
        live_sandbox._call("POST", "/sandbox/users", {"id": user})
    for user in BLOCKED:
        live_sandbox._call("POST", f"/sandbox/users/{user}/block", {})

    procs.env.update(RATE_BOT_PER_SECOND="40", BROADCAST_PARALLELISM="3", OUTBOX_LEASE_SECONDS="3")
    queues = "interactive,notifications,maintenance"
    workers = [procs.worker(f"w{i}", "-Q", queues, "-c", "1") for i in (1, 2, 3)]

    producer = Celery("test", broker=broker_url, set_as_current=False)
    actor = c.Actor(user_id=ADMIN, chat_id=ADMIN, username="boss")

    def send(command: c.Command) -> None:
        producer.send_task(command.task_name, kwargs=command.to_kwargs(), queue="interactive")

    send(
        c.StartBroadcast(
            idempotency_key="tg-update:1", actor=actor, audience="residents", text=TEXT
        )
    )
    wait_for(
        "the preview",
        lambda: any(
            "Send this to 150 recipients" in (m["text"] or "") for m in live_sandbox.messages(ADMIN)
        ),
    )
    preview = live_sandbox.messages(ADMIN)[-1]
    confirm = preview["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    broadcast_id = BroadcastCb.unpack(confirm).id

    live_sandbox.fault("429", count=4, retry_after=1)
    live_sandbox.fault("5xx", count=4, status=502)
    live_sandbox.fault("drop", count=3)
    send(c.ConfirmBroadcast(idempotency_key="tg-update:2", actor=actor, broadcast_id=broadcast_id))

    def delivered() -> int:
        return sum(1 for r in RESIDENTS if live_sandbox.messages(r))

    wait_for("the broadcast to get going", lambda: delivered() >= 30)
    workers[0].kill(signal.SIGKILL)  # mid-batch, holding a claimed row and an unacked task
    procs.worker("w4", "-Q", queues, "-c", "1")

    def relay() -> None:  # what beat does every 30 s, faster
        producer.send_task("maintenance.relay_outbox", queue="maintenance")

    wait_for(
        "every reachable chat",
        lambda: delivered() >= len(RESIDENTS) - len(BLOCKED),
        timeout=120,
        every=relay,
    )
    wait_for(
        "the final progress",
        lambda: (
            "finished: 148 sent, 2 failed of 150"
            in (live_sandbox.messages(ADMIN)[-1]["text"] or "")
        ),
        timeout=60,
        every=relay,
    )

    per_chat = {r: sum(1 for m in live_sandbox.messages(r) if m["text"] == TEXT) for r in RESIDENTS}
    assert {r: n for r, n in per_chat.items() if n != 1 and r not in BLOCKED} == {}
    assert all(per_chat[r] == 0 for r in BLOCKED)
    stats = live_sandbox.stats()
    assert stats["rejected_429"] >= 4
    with Session(engine) as s:
        states = outbox_counts(s, broadcast_id)
        broadcast = s.get(Broadcast, broadcast_id)
        unreachable = s.scalars(select(User.telegram_id).where(User.reachable.is_(False))).all()
    engine.dispose()
    assert states == {"sent": 148, "failed": 2}
    assert broadcast is not None and broadcast.state == "done"
    assert sorted(unreachable) == BLOCKED  # found out by their 403s, never retried
