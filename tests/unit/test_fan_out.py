"""A notice to many (every staff member of a place) is one row in the command, written out per
recipient after commit: the command costs the same for 3 staff members as for 300."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core import commands as c
from db.models import Outbox, User
from tests.support.follow_ups import run_follow_ups_inline
from tests.support.sandbox_api import SandboxAPI
from tests.unit.test_desk import ADMIN, RESIDENT, STAFF, STAFF2, Desk, _sandbox_files, make_desk
from workers import outbox


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The notices' deliveries a command hands over, held instead of run."""
    batches: list[list[int]] = []

    def hold(signatures: object) -> None:
        for sig in signatures:  # type: ignore[attr-defined]
            if sig is not None and sig.task == outbox.DELIVER_TASK:
                batches.append(list(sig.args[0]))

    monkeypatch.setattr("workers.command_tasks.send_signatures", hold)
    return batches


@pytest.fixture
def desk(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> Desk:
    run_follow_ups_inline(monkeypatch)
    return make_desk(db, sandbox, monkeypatch)


def _rows(db: Engine) -> list[Outbox]:
    with Session(db) as s:
        return list(s.scalars(select(Outbox).order_by(Outbox.id)))


def _set(db: Engine, who: int, **values: object) -> None:
    with Session(db) as s:
        user = s.scalars(select(User).where(User.telegram_id == who)).one()
        for key, value in values.items():
            setattr(user, key, value)
        s.commit()


def test_a_new_request_writes_one_row_for_all_staff_then_each_gets_it_in_their_language(
    desk: Desk, db: Engine, held: list[list[int]]
) -> None:
    _set(db, STAFF2, language="ru")
    before = len(_rows(db))
    desk.create(title="Leak")
    written = _rows(db)[before:]
    # The reply to the author and one fan-out row, whatever the number of staff.
    assert [r.method for r in written] == ["sendMessage", outbox.FAN_OUT]
    fan_out = written[1]
    # Recipients by user id only: no Telegram id of anyone in it.
    assert fan_out.chat_id == outbox.NO_CHAT and fan_out.payload["chat_id"] == outbox.NO_CHAT
    assert all(isinstance(u, int) and u < 1000 for u in fan_out.payload["users"])
    (batch,) = held
    assert batch == [fan_out.id]

    report = outbox.deliver(batch)
    assert report.counts == {"expanded": 1, "sent": 3}
    for member in (STAFF, ADMIN):
        assert "Leak" in desk.texts(member)[-1] and "New request" in desk.texts(member)[-1]
    assert "Новая заявка" in desk.texts(STAFF2)[-1]
    assert desk.sandbox.messages(STAFF)[-1]["reply_markup"]["inline_keyboard"]  # Accept, ...
    expanded = [r for r in _rows(db) if r.id > fan_out.id]
    assert sorted(r.chat_id for r in expanded) == [STAFF, STAFF2, ADMIN]
    assert all(r.actor_id == fan_out.actor_id and r.request_id for r in expanded)
    done = next(r for r in _rows(db) if r.id == fan_out.id)
    assert (done.state, done.payload) == ("sent", {})  # nothing kept of the texts

    # A redelivered task: nothing written or sent twice.
    assert outbox.deliver(batch).counts == {"skipped": 1}
    assert sum("Leak" in text for text in desk.texts(STAFF)) == 1


def test_recipients_blocked_or_erased_meanwhile_are_skipped(
    desk: Desk, db: Engine, held: list[list[int]]
) -> None:
    desk.create(title="Leak")
    _set(db, STAFF, reachable=False)  # blocked the bot after the command
    _set(db, STAFF2, telegram_id=None)  # erased after the command
    assert outbox.deliver(held[0]).counts == {"expanded": 1, "sent": 1}
    assert "Leak" in desk.texts(ADMIN)[-1]
    assert not any("Leak" in text for text in desk.texts(STAFF) + desk.texts(STAFF2))


def test_an_unassigned_comment_with_files_reaches_every_staff_member_with_its_album(
    desk: Desk, db: Engine
) -> None:
    rid = desk.create(title="Leak")
    photos = [c.AttachmentIn(kind="photo", file_id=f) for f in _sandbox_files(desk, 2)]
    desk.run(c.AddComment, RESIDENT, request_id=rid, text="Still dripping", attachments=photos)
    for member in (STAFF, STAFF2, ADMIN):
        notice, *album = desk.sandbox.messages(member)[-3:]
        assert "Still dripping" in notice["text"]  # the notice, then the album after it
        assert len({m["media_group_id"] for m in album} - {None}) == 1
    with Session(db) as s:
        left = s.scalar(select(func.count()).select_from(Outbox).where(Outbox.state == "pending"))
    assert left == 0
