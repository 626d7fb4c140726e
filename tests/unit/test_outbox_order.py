"""Messages to one chat go out in the order they were written, whichever worker sends them: a
newer message waits for an older unsent one, and whoever sends the older sends it next."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from core import commands as c
from core.clock import now
from db.models import Outbox
from tests.support.sandbox_api import SandboxAPI
from workers import outbox
from workers.command_runner import apply_command
from workers.outbox import Replies

CHAT, OTHER = 7301, 7302


def write(db: Engine, key: str, *rows: tuple[int, str]) -> list[int]:
    with Session(db) as s:
        replies = Replies.for_job(s, key)
        for chat, text in rows:
            replies.message(chat, text)
        s.commit()
        return [r.id for r in replies.rows]


def texts(sandbox: SandboxAPI, chat: int) -> list[str]:
    return [m["text"] for m in sandbox.messages(chat)]


def test_a_newer_message_waits_for_the_older_and_follows_it(
    db: Engine, sandbox: SandboxAPI
) -> None:
    for user in (CHAT, OTHER):
        sandbox._call("POST", "/sandbox/users", {"id": user})
    first, second = write(db, "a", (CHAT, "Request #1 created")) + write(db, "b", (CHAT, "#1"))
    (elsewhere,) = write(db, "c", (OTHER, "to someone else"))

    # The newer one's sender finds the older unsent: it leaves it (no retry of its own)...
    report = outbox.deliver([second, elsewhere])
    assert report.counts == {"skipped": 1, "sent": 1} and report.retry_at == {}
    assert texts(sandbox, CHAT) == [] and texts(sandbox, OTHER) == ["to someone else"]
    # ...and the older one's sender sends both, in order.
    assert outbox.deliver([first]).counts == {"sent": 2}
    assert texts(sandbox, CHAT) == ["Request #1 created", "#1"]


def test_a_message_due_later_holds_the_newer_ones_until_it_goes(
    db: Engine, sandbox: SandboxAPI
) -> None:
    sandbox._call("POST", "/sandbox/users", {"id": CHAT})
    first, second = write(db, "a", (CHAT, "one"), (CHAT, "two"))
    with Session(db) as s:  # a 429 put the first one off
        s.execute(
            update(Outbox)
            .where(Outbox.id == first)
            .values(next_attempt_at=now() + timedelta(seconds=30))
        )
        s.commit()
    assert outbox.deliver([first, second]).counts == {"skipped": 2}
    assert texts(sandbox, CHAT) == []
    with Session(db) as s:
        s.execute(update(Outbox).where(Outbox.id == first).values(next_attempt_at=now()))
        s.commit()
    assert outbox.deliver([first]).counts == {"sent": 2}
    assert texts(sandbox, CHAT) == ["one", "two"]


def test_edits_neither_wait_nor_hold_up(db: Engine, sandbox: SandboxAPI) -> None:
    sandbox._call("POST", "/sandbox/users", {"id": CHAT})
    (progress,) = write(db, "p", (CHAT, "Broadcast: 0 sent"))
    assert outbox.deliver([progress]).counts == {"sent": 1}
    message_id = sandbox.messages(CHAT)[0]["message_id"]
    (pending,) = write(db, "q", (CHAT, "put off by a 429"))
    with Session(db) as s:
        later = now() + timedelta(seconds=30)
        s.execute(update(Outbox).where(Outbox.id == pending).values(next_attempt_at=later))
        replies = Replies.for_job(s, "e")
        edit = replies.send(
            CHAT, "editMessageText", {"message_id": message_id, "text": "Broadcast: 5 sent"}
        )
        s.commit()
        edit_id = edit.id
    assert outbox.deliver([edit_id]).counts == {"sent": 1}  # not behind the pending message
    assert texts(sandbox, CHAT) == ["Broadcast: 5 sent"]


@pytest.mark.usefixtures("inproc_worker")
def test_a_backlog_is_handed_on_not_held(
    db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task sends a chat's backlog only for a while, then hands the next row to a task of its
    own: the chat still gets everything, in order."""
    from workers.app import send_signatures

    monkeypatch.setattr(outbox, "CHAIN_BUDGET_S", 0.0)
    sandbox._call("POST", "/sandbox/users", {"id": CHAT})
    ids = write(db, "backlog", *((CHAT, f"notice {n}") for n in range(5)))
    report = outbox.deliver(ids[:1])
    assert report.counts == {"sent": 1}
    assert list(report.retry_at) == [ids[1]]  # the next one, for another task
    send_signatures([outbox.retry_signature(report)])
    sandbox.wait_messages(CHAT, 5, timeout=30)
    assert texts(sandbox, CHAT) == [f"notice {n}" for n in range(5)]


def test_a_message_being_sent_holds_the_newer_ones_until_it_is_through(
    db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of two workers: the older row is claimed and waits on the limiter (or on
    Telegram) while another worker is handed the newer one: the newer must not overtake it."""
    import threading

    sandbox._call("POST", "/sandbox/users", {"id": CHAT})
    first, second = write(db, "a", (CHAT, "Request #1 created"), (CHAT, "#1 in your list"))
    claimed, overtaken = threading.Event(), threading.Event()
    real_send = outbox.send_claimed

    def slow_send(row: Outbox) -> tuple[str, object]:
        if row.id == first:
            claimed.set()
            overtaken.wait(10)  # the other worker has had its go
        return real_send(row)

    monkeypatch.setattr(outbox, "send_claimed", slow_send)
    older = threading.Thread(target=lambda: outbox.deliver([first]))
    older.start()
    assert claimed.wait(10)
    report = outbox.deliver([second])  # another worker, meanwhile
    overtaken.set()
    older.join(10)
    assert report.counts == {"skipped": 1}
    # It is retried when the hold would end (40 s after the claim), should that sender die.
    (retry,) = report.retry_at.values()
    assert 30 < (retry - now()).total_seconds() <= 40
    assert texts(sandbox, CHAT) == ["Request #1 created", "#1 in your list"]


def test_a_row_whose_sender_died_long_ago_does_not_hold_its_chat(
    db: Engine, sandbox: SandboxAPI
) -> None:
    from core.settings import get_settings

    sandbox._call("POST", "/sandbox/users", {"id": CHAT})
    first, second = write(db, "a", (CHAT, "lost with its sender"), (CHAT, "next"))
    lease = timedelta(seconds=get_settings().outbox_lease_seconds)
    with Session(db) as s:  # claimed a minute ago by a worker that is gone: lease still running
        s.execute(
            update(Outbox)
            .where(Outbox.id == first)
            .values(state="sending", next_attempt_at=now() + lease - timedelta(seconds=60))
        )
        s.commit()
    assert outbox.deliver([second]).counts == {"sent": 1}
    assert texts(sandbox, CHAT) == ["next"]


def test_a_delivery_past_its_budget_hands_the_rest_on(
    db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """notifications.deliver starts sends for DELIVER_BUDGET_S, then hands the rest to a task
    of its own: many notices never run a task into its time limit, and all arrive."""
    from workers import notification_tasks

    handed: list[object] = []
    monkeypatch.setattr(notification_tasks, "DELIVER_BUDGET_S", 0.0)
    monkeypatch.setattr(notification_tasks, "send_signatures", handed.extend)
    chats = [7400 + n for n in range(4)]
    for chat in chats:
        sandbox._call("POST", "/sandbox/users", {"id": chat})
    ids = write(db, "many", *((chat, f"notice to {chat}") for chat in chats))
    assert notification_tasks.deliver(ids) == {"deferred": 4}  # no time left to start any
    (follow_up,) = handed
    assert follow_up is not None and sorted(follow_up.args[0]) == ids  # type: ignore[attr-defined]
    monkeypatch.setattr(notification_tasks, "DELIVER_BUDGET_S", 10.0)
    assert notification_tasks.deliver(*follow_up.args) == {"sent": 4}  # type: ignore[attr-defined]
    assert [texts(sandbox, chat) for chat in chats] == [[f"notice to {c}"] for c in chats]


def _two_replies(session: Session, command: c.RegisterUser, replies: Replies) -> None:
    replies.message(command.actor.chat_id, "one")
    replies.message(command.actor.chat_id, "two")


def _start(key: str) -> c.RegisterUser:
    return c.RegisterUser(idempotency_key=key, actor=c.Actor(user_id=CHAT, chat_id=CHAT))


def test_the_actors_first_reply_is_claimed_in_the_commands_transaction(
    db: Engine, sandbox: SandboxAPI
) -> None:
    sandbox._call("POST", "/sandbox/users", {"id": CHAT})
    outcome = apply_command(_start("tg-update:1"), _two_replies)
    assert outcome.claimed is not None and outcome.claimed.id == outcome.inline[0]
    with Session(db) as s:  # committed as claimed: no other sender takes it
        states = [s.get(Outbox, i).state for i in outcome.inline]  # type: ignore[union-attr]
    assert states == ["sending", "pending"]
    assert outbox.claim(Outbox.id == outcome.inline[0]) is None
    # Sent without a claim of its own, the second after it.
    report = outbox.deliver(outcome.inline, claimed=outcome.claimed)
    assert report.counts == {"sent": 2}
    assert texts(sandbox, CHAT) == ["one", "two"]


def test_a_reply_behind_an_older_message_is_not_claimed_in_the_command(
    db: Engine, sandbox: SandboxAPI
) -> None:
    sandbox._call("POST", "/sandbox/users", {"id": CHAT})
    (older,) = write(db, "a", (CHAT, "older"))  # not sent yet
    outcome = apply_command(_start("tg-update:2"), _two_replies)
    assert outcome.claimed is None
    # Its deliverer leaves it to the older one's, which sends all three in order.
    assert outbox.deliver(outcome.inline).counts == {"skipped": 2}
    assert outbox.deliver([older]).counts == {"sent": 3}
    assert texts(sandbox, CHAT) == ["older", "one", "two"]
