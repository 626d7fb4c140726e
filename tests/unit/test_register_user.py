"""/start on the worker side: idempotent upsert, welcome via the outbox, delivery outcomes."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from core.commands import Actor, RegisterUser, idempotency_key
from core.menu import main_menu
from core.roles import Role
from core.texts import t
from db.models import Outbox, ProcessedCommand, User
from tests.support.follow_ups import run_follow_ups_inline
from tests.support.sandbox_api import SandboxAPI
from workers.command_tasks import run_command
from workers.maintenance_tasks import relay_outbox
from workers.welcome import register_user as _register_user


@pytest.fixture(autouse=True)
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[dict[int, object]]:
    """Retries the runner schedules, captured instead of published (see the worker test)."""
    return run_follow_ups_inline(monkeypatch).retries


def start(update_id: int, user_id: int = 1001, **actor: object) -> RegisterUser:
    return RegisterUser(
        idempotency_key=idempotency_key(update_id),
        actor=Actor(user_id=user_id, chat_id=user_id, **actor),
    )


def test_the_same_command_from_another_message_under_a_reused_update_id_is_applied(
    db: Engine, sandbox: SandboxAPI
) -> None:
    """Telegram numbers updates again after a quiet week: the same user sending the same
    command again is a new action (another message), while the same message twice is not."""
    sandbox.send_text(1001, "/start")

    def again(message_id: int) -> RegisterUser:
        command = start(1, first_name="Ann")
        return command.model_copy(update={"origin": f"m:1001:{message_id}"})

    assert run_command(again(10), _register_user) is True
    assert run_command(again(10), _register_user) is False  # Telegram sent it twice
    assert run_command(again(500), _register_user) is True  # a week later, update id 1 again
    assert len(sandbox.messages(1001)) == 2


def count(engine: Engine, model: type) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_start_registers_the_user_and_sends_the_welcome(db: Engine, sandbox: SandboxAPI) -> None:
    sandbox.send_text(1001, "/start", first_name="Ann")  # the chat exists at the sandbox
    assert run_command(start(1, first_name="Ann", language="en"), _register_user)

    with Session(db) as s:
        user = s.scalars(select(User)).one()
        row = s.scalars(select(Outbox)).one()
    assert (user.telegram_id, user.role, user.first_name, user.reachable) == (
        1001,
        "resident",
        "Ann",
        True,
    )
    assert row.state == "sent" and row.message_id is not None
    (message,) = sandbox.messages(1001)
    assert message["text"].startswith("Hello, Ann!")
    assert message["reply_markup"]["keyboard"] == main_menu(Role.RESIDENT, "en")["keyboard"]


def test_a_redelivered_start_changes_nothing_and_sends_nothing(
    db: Engine, sandbox: SandboxAPI
) -> None:
    sandbox.send_text(1001, "/start")
    assert run_command(start(7), _register_user) is True
    assert run_command(start(7), _register_user) is False
    assert (count(db, User), count(db, Outbox), count(db, ProcessedCommand)) == (1, 1, 1)
    assert len(sandbox.messages(1001)) == 1


def test_a_reused_update_id_with_another_command_is_applied(
    db: Engine, sandbox: SandboxAPI
) -> None:
    """Update ids numbered from the start again (a restarted Bot API server, or Telegram after
    a quiet week): the same key with another command is a new action, not a duplicate."""
    for user in (1001, 1002):
        sandbox.send_text(user, "/start")
    assert run_command(start(1, user_id=1001, first_name="Ann"), _register_user) is True
    assert run_command(start(1, user_id=1002, first_name="Bob"), _register_user) is True
    assert run_command(start(1, user_id=1002, first_name="Bob"), _register_user) is False
    assert count(db, User) == 2
    assert [len(sandbox.messages(u)) for u in (1001, 1002)] == [1, 1]


def test_a_second_start_refreshes_the_same_profile(db: Engine, sandbox: SandboxAPI) -> None:
    sandbox.send_text(1001, "/start")
    run_command(start(1, first_name="Ann", language="en"), _register_user)
    run_command(start(2, first_name="Анна", language="ru"), _register_user)
    with Session(db) as s:
        user = s.scalars(select(User)).one()
    assert (user.first_name, user.language) == ("Анна", "ru")
    assert sandbox.messages(1001)[-1]["text"].startswith("Здравствуйте")


def test_an_unchanged_profile_is_not_written_again(db: Engine, sandbox: SandboxAPI) -> None:
    # Every command refreshes the profile: that must cost a read, not a write per command.
    sandbox.send_text(1001, "/start")
    run_command(start(1, first_name="Ann", username="ann"), _register_user)
    writes: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith(("INSERT INTO USERS", "UPDATE USERS")):
            writes.append(statement)

    event.listen(db, "before_cursor_execute", record)
    try:
        run_command(start(2, first_name="Ann", username="ann"), _register_user)
        assert writes == []
        run_command(start(3, first_name="Anna", username="ann"), _register_user)
        assert len(writes) == 1
    finally:
        event.remove(db, "before_cursor_execute", record)
    with Session(db) as s:
        assert s.scalars(select(User.first_name)).one() == "Anna"


def test_a_username_taken_over_is_released_by_its_old_holder(
    db: Engine, sandbox: SandboxAPI
) -> None:
    # 1001 was @Ann_B and renamed; 1002 took the name: Telegram's names are case-insensitive.
    for user in (1001, 1002, 1003):
        sandbox.send_text(user, "/start")
    run_command(start(1, user_id=1001, username="Ann_B"), _register_user)
    run_command(start(2, user_id=1003, username="carl"), _register_user)
    run_command(start(3, user_id=1002, username="ann_b"), _register_user)
    with Session(db) as s:
        names = {u.telegram_id: u.username for u in s.scalars(select(User))}
    assert names == {1001: None, 1002: "ann_b", 1003: "carl"}
    run_command(start(4, user_id=1001, username="ann_c"), _register_user)  # 1001's new name
    with Session(db) as s:
        assert s.scalars(select(User.username).where(User.telegram_id == 1001)).one() == "ann_c"


def test_admin_ids_bootstrap_admins(
    db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("ADMIN_IDS", "1001")
    get_settings.cache_clear()
    sandbox.send_text(1001, "/start")
    run_command(start(1), _register_user)
    with Session(db) as s:
        assert s.scalars(select(User.role)).one() == "admin"
    assert t("role.admin", "en") in sandbox.messages(1001)[0]["text"]


def test_user_text_is_escaped_in_the_welcome(db: Engine, sandbox: SandboxAPI) -> None:
    sandbox.send_text(1001, "/start")
    run_command(start(1, first_name="<b>x</b> & <script>"), _register_user)
    (message,) = sandbox.messages(1001)  # the sandbox would refuse malformed HTML with a 400
    assert "<b>x</b> & <script>" in message["text"]


def test_a_failed_send_stays_pending_and_a_redelivery_sends_it_once(
    db: Engine, sandbox: SandboxAPI, scheduled: list[dict[int, object]]
) -> None:
    sandbox.send_text(1001, "/start")
    sandbox.fault("5xx", count=1)
    run_command(start(3), _register_user)
    with Session(db) as s:
        row = s.scalars(select(Outbox)).one()
    assert (row.state, row.attempts) == ("pending", 1) and "Server" in (row.last_error or "")
    assert list(scheduled[0]) == [row.id]  # a retry is scheduled after the backoff
    assert sandbox.messages(1001) == []

    with Session(db) as s:  # make the retry due now instead of after the backoff
        s.get(Outbox, row.id).next_attempt_at = row.created_at  # type: ignore[union-attr]
        s.commit()
    assert run_command(start(3), _register_user) is False
    assert run_command(start(3), _register_user) is False
    assert len(sandbox.messages(1001)) == 1
    with Session(db) as s:
        assert s.scalars(select(Outbox.state)).one() == "sent"


def test_rate_limited_send_waits_for_retry_after(
    db: Engine, sandbox: SandboxAPI, scheduled: list[dict[int, object]]
) -> None:
    sandbox.send_text(1001, "/start")
    # 20 s: a wait under MAX_PARKED_DELAY_S is parked on the broker; longer ones are the
    # relay's (see test_a_long_wait_is_left_to_the_relay).
    sandbox.fault("429", retry_after=20, count=1)
    run_command(start(4), _register_user)
    with Session(db) as s:
        row = s.scalars(select(Outbox)).one()
    assert row.state == "pending"
    assert [list(retry) for retry in scheduled] == [[row.id]]
    assert (
        row.next_attempt_at.replace(tzinfo=None) - row.created_at.replace(tzinfo=None)
    ).total_seconds() >= 19
    assert relay_outbox() == {}  # not due yet


def test_a_long_wait_is_left_to_the_relay(
    db: Engine, sandbox: SandboxAPI, scheduled: list[dict[int, object]]
) -> None:
    """Nothing waits on the broker past its visibility timeout: the row waits in the database."""
    sandbox.send_text(1001, "/start")
    sandbox.fault("429", retry_after=300, count=1)
    run_command(start(5), _register_user)
    with Session(db) as s:
        row = s.scalars(select(Outbox)).one()
    assert row.state == "pending" and scheduled == []
    assert (
        row.next_attempt_at.replace(tzinfo=None) - row.created_at.replace(tzinfo=None)
    ).total_seconds() >= 299


def test_blocked_user_is_marked_unreachable_and_not_retried(
    db: Engine, sandbox: SandboxAPI
) -> None:
    sandbox.send_text(1001, "/start")
    sandbox._call("POST", "/sandbox/users/1001/block", {})
    run_command(start(5), _register_user)
    with Session(db) as s:
        assert s.scalars(select(User.reachable)).one() is False
        assert s.scalars(select(Outbox.state)).one() == "failed"
    assert relay_outbox() == {}


def test_unknown_chat_is_a_dead_letter(db: Engine, sandbox: SandboxAPI) -> None:
    run_command(start(6, user_id=424242), _register_user)  # never talked to the sandbox
    with Session(db) as s:
        row = s.scalars(select(Outbox)).one()
    assert row.state == "dead" and "chat not found" in (row.last_error or "")


def test_relay_sends_rows_left_pending(db: Engine, sandbox: SandboxAPI) -> None:
    from workers.outbox import Replies

    sandbox.send_text(1001, "/start")
    with Session(db) as s:  # a worker that died between commit and send left this behind
        Replies(s, "tg-update:99").message(1001, "left behind")
        s.commit()
    assert relay_outbox() == {"sent": 1}
    assert relay_outbox() == {}
    assert [m["text"] for m in sandbox.messages(1001)] == ["left behind"]
