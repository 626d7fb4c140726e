"""Erasure racing a command of the same user, on PostgreSQL's row locks: whichever commits
first, nothing of the user survives, and the command restores nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import commands as c
from core.clock import now
from core.domain import ErasureMode, ErasureReason
from db.models import Comment, DeadLetter, ErasureAudit, Request, User
from db.session import session_scope
from tests.support.pii import scan_database
from workers.command_runner import apply_command
from workers.commands import HANDLERS
from workers.privacy.erasure import unlink
from workers.privacy_tasks import scrub_until_done

ZQ = 987654321
PROFILE = {"username": "zqerased", "first_name": "Zeldarine", "last_name": "Quixotova"}
NEEDLES = [*PROFILE.values(), "purple-wombat"]
_keys = iter(range(10_000, 20_000))


def command(model: type[c.Command], **fields: Any) -> c.Command:
    return model(
        idempotency_key=f"tg-update:{next(_keys)}",
        actor=c.Actor(user_id=ZQ, chat_id=ZQ, **PROFILE),
        issued_at=now(),
        **fields,
    )


@pytest.fixture
def request_id(pg: Engine) -> Iterator[int]:
    apply_command(
        command(c.CreateRequest, title="Leak", description="purple-wombat drips", location="Hall"),
        HANDLERS[c.CreateRequest],
    )
    with Session(pg) as s:
        yield int(s.scalars(select(Request.id)).one())


def _erase(telegram_id: int = ZQ) -> dict[str, int]:
    """Step one, then the steps after it to the end, as /forget_me and privacy.scrub do."""
    with session_scope() as session:
        audit_id = unlink(
            session, telegram_id, reason=ErasureReason.SELF, mode=ErasureMode.ANONYMIZE
        ).id
    assert scrub_until_done(audit_id, budget_s=None)
    with session_scope() as session:
        audit = session.get(ErasureAudit, audit_id)
        assert audit is not None and audit.finished_at is not None
        return audit.counts


def test_a_command_holding_the_profile_commits_first_and_is_erased(
    pg: Engine, request_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = HANDLERS[c.AddComment]
    inside = threading.Event()

    def slow_comment(session: Any, cmd: Any, replies: Any) -> None:
        handler(session, cmd, replies)  # the profile is read FOR KEY SHARE in here
        inside.set()
        time.sleep(1.0)  # the erasure starts meanwhile and must wait for this commit

    worker = threading.Thread(
        target=apply_command,
        args=(
            command(c.AddComment, request_id=request_id, text="purple-wombat late"),
            slow_comment,
        ),
    )
    worker.start()
    assert inside.wait(10)
    started = time.monotonic()
    _erase()
    waited = time.monotonic() - started
    worker.join(10)
    assert waited > 0.5, "the erasure did not wait for the command holding the profile"
    with Session(pg) as s:
        assert not s.scalars(select(Comment)).all()
    assert scan_database(pg, NEEDLES, ZQ) == []


def test_a_command_that_waited_for_the_erasure_restores_nothing(
    pg: Engine, request_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = command(c.AddComment, request_id=request_id, text="purple-wombat late")
    again = command(c.CreateRequest, title="New", description="purple-wombat 2", location="Hall")
    holding = threading.Event()
    release = threading.Event()

    def erase_slowly() -> None:
        with session_scope() as session:
            audit = unlink(session, ZQ, reason=ErasureReason.SELF, mode=ErasureMode.ANONYMIZE)
            audit_id = audit.id
            holding.set()
            release.wait(10)  # the commands arrive while the erasure holds the profile
        scrub_until_done(audit_id, budget_s=None)

    eraser = threading.Thread(target=erase_slowly)
    eraser.start()
    assert holding.wait(10)
    outcomes: list[Any] = []
    runners = [
        threading.Thread(target=lambda m=m: outcomes.append(apply_command(m, HANDLERS[type(m)])))
        for m in (late, again)
    ]
    for runner in runners:
        runner.start()
    time.sleep(0.5)
    assert all(r.is_alive() for r in runners), "a command did not wait for the erasure"
    release.set()
    eraser.join(10)
    for runner in runners:
        runner.join(10)
    assert [o.inline for o in outcomes] == [[], []]  # dropped: not even a reply
    with Session(pg) as s:
        assert s.scalars(select(User).where(User.telegram_id == ZQ)).first() is None
        assert not s.scalars(select(Comment)).all()
    assert scan_database(pg, NEEDLES, ZQ) == []


def test_dead_letters_of_the_user_go_and_malformed_ones_do_not_break_it(pg: Engine) -> None:
    big = 7_000_000_001  # Telegram ids outgrow a 32-bit integer
    with Session(pg) as s:
        for actor in ({"user_id": big}, {"user_id": "abc"}, {"user_id": ZQ}, "not a dict"):
            s.add(
                DeadLetter(
                    task_name="commands.add_comment",
                    command={"actor": actor, "text": "x"},
                    error="e",
                    attempts=1,
                )
            )
        s.commit()
    assert _erase(big)["dead_letters"] == 1
    with Session(pg) as s:
        left = [d.command["actor"] for d in s.scalars(select(DeadLetter).order_by(DeadLetter.id))]
    assert left == [{"user_id": "abc"}, {"user_id": ZQ}, "not a dict"]


def test_staff_commenting_on_their_request_while_the_erasure_runs_does_not_deadlock(
    pg: Engine, request_id: int
) -> None:
    """The erasure in one transaction deadlocked here (bench/privacy.py): it held the profile,
    then wanted the requests; a staff comment held the request, then wanted the profile for
    its notice's foreign key. Step one touches no request, a step no profile."""
    staff = c.Actor(user_id=2001, chat_id=2001, first_name="Boris")
    with Session(pg) as s:
        s.add(User(telegram_id=2001, role="staff", language="en", first_name="Boris"))
        s.commit()
    comment = c.AddComment(
        idempotency_key="tg-update:9001",
        actor=staff,
        issued_at=now(),
        request_id=request_id,
        text="Zeldarine, I come at 5",
    )
    holding, errors = threading.Event(), []

    def erase_holding_step_one() -> None:
        try:
            with session_scope() as session:
                audit = unlink(session, ZQ, reason=ErasureReason.SELF, mode=ErasureMode.ANONYMIZE)
                audit_id = audit.id
                holding.set()
                time.sleep(1.0)  # the staff command locks the request meanwhile
            assert scrub_until_done(audit_id, budget_s=None)
        except Exception as error:  # reported below, with the command's
            errors.append(error)

    def comment_as_staff() -> None:
        try:
            apply_command(comment, HANDLERS[c.AddComment])
        except Exception as error:
            errors.append(error)

    eraser = threading.Thread(target=erase_holding_step_one)
    eraser.start()
    assert holding.wait(10)
    commenter = threading.Thread(target=comment_as_staff)
    commenter.start()
    for thread in (eraser, commenter):
        thread.join(30)
        assert not thread.is_alive()
    assert errors == []
    with Session(pg) as s:
        # The staff's words stay, without the name; nothing is left to send to the user.
        assert s.scalars(select(Comment.text)).all() == ["erased user, I come at 5"]
    assert scan_database(pg, NEEDLES, ZQ) == []
