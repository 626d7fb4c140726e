"""Outages end to end: Redis or PostgreSQL cut while people use the desk, a worker host killed
mid-command, beat through a Redis outage. Real processes, the sandbox over HTTP, and a TcpProxy
in front of the service being cut, for one process only.

What each test specifies: nothing users do during the outage is lost, and once the service is
back every action is applied and answered exactly once, without an apology ("Sorry...").
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.texts import t
from db.models import Request
from tests.support.chat import Chat, Message
from tests.support.processes import Proc, Processes
from tests.support.sandbox_api import SandboxAPI
from tests.support.tcp_proxy import TcpProxy, proxy_for, via_proxy

pytestmark = pytest.mark.e2e

ADMIN, STAFF, RESIDENT = 3001, 2001, 1001
CREATED = re.compile(r"Request #(\d+) created\.")
BUSY = t("busy", "en")
MY_LIST = "Your requests"
STAFF_LIST = "Staff (open requests"  # the title may go on with a page number


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def proxies() -> Iterator[list[TcpProxy]]:
    """Proxies made by the test, closed at its end (listed first: after its processes stop)."""
    made: list[TcpProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def text_of(message: Message) -> str:
    return message.get("text") or message.get("caption") or ""


def count(api: SandboxAPI, chat_id: int, needle: str) -> int:
    """How many bot messages in the chat (each counted once, edits included) contain it."""
    return sum(needle in text_of(m) for m in api.messages(chat_id))


def created_ids(api: SandboxAPI, chat_id: int) -> list[int]:
    return [
        int(m.group(1)) for s in map(text_of, api.messages(chat_id)) if (m := CREATED.search(s))
    ]


def last_seq(api: SandboxAPI, *chat_ids: int) -> int:
    return max((m["seq"] for c in chat_ids for m in api.messages(c)), default=0)


def got_since(api: SandboxAPI, seq: int, *chat_ids: int) -> dict[int, list[str]]:
    """What each user was sent (or had edited) after `seq`: for failure messages."""
    return {c: [text_of(m) for m in api.messages(c, after=seq)] for c in chat_ids}


def assert_no_apology(api: SandboxAPI, *chat_ids: int) -> None:
    for chat_id in chat_ids:
        apologies = [s for s in map(text_of, api.messages(chat_id)) if BUSY in s]
        assert apologies == [], f"user {chat_id} got an apology: {apologies}"


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.5)


def all_of(
    checks: dict[str, Callable[[], bool]], timeout: float, context: Callable[[], str]
) -> None:
    """Every named check true within `timeout`; else name the ones that were not."""
    try:
        eventually(lambda: all(check() for check in checks.values()), timeout, "all of it")
    except AssertionError:
        missing = [name for name, check in checks.items() if not check()]
        raise AssertionError(f"not within {timeout:.0f} s: {missing}\n{context()}") from None


def desk_users(api: SandboxAPI) -> dict[int, Chat]:
    """An admin (ADMIN_IDS), one staff member granted by the admin, a resident; all started."""
    chats = {u: Chat(api, u) for u in (ADMIN, STAFF, RESIDENT)}
    for chat in chats.values():
        chat.say("/start")
        chat.wait("Hello")
    chats[ADMIN].say(f"/grant {STAFF} staff")
    chats[ADMIN].wait("is now staff")
    return chats


def to_summary(chat: Chat, title: str) -> Message:
    """Walk /new up to the summary with Submit (no files, normal priority)."""
    chat.say("/new")
    chat.wait("What is the problem?")
    chat.say(title)
    chat.wait("Describe the problem")
    chat.say(f"Details of {title}")
    chat.wait("Where is it?")
    chat.say("Entrance 2, floor 3")
    chat.press(chat.wait("How urgent"), "Normal")
    chat.press(chat.wait("Add photos"), "Skip")
    return chat.wait("Check your request")


def create(chat: Chat, title: str) -> int:
    chat.press(to_summary(chat, title), "Submit")
    created = chat.wait(lambda m: CREATED.match(text_of(m)) is not None)
    return int(CREATED.match(text_of(created)).group(1))  # type: ignore[union-attr]


def accepted_texts(rid: int, title: str) -> tuple[str, str]:
    """What the author is told, and what the staff member who accepted is answered."""
    status = t("status.accepted", "en")
    return (
        f"Request #{rid} «{title}» is now {status} (by @u{STAFF})",
        f"Request #{rid}: {status}.",
    )


def requests_in(db_url: str) -> dict[int, tuple[str, str]]:
    """id → (title, status), read on the real database port."""
    engine: Engine = create_engine(db_url)
    try:
        with Session(engine) as s:
            return {r.id: (r.title, r.status) for r in s.scalars(select(Request))}
    finally:
        engine.dispose()


def relay_runs(worker: Proc) -> int:
    return sum(
        "maintenance.relay_outbox[" in line and "received" in line
        for line in worker.log().splitlines()
    )


# -- Redis cut for the bot (broker and dialog storage) ---------------------------------------


@pytest.mark.timeout(240)
def test_redis_cut_for_20_s_while_users_act(
    proxies: list[TcpProxy],
    procs: Processes,
    live_sandbox: SandboxAPI,
    redis_url: str,
    pg_url: str,
) -> None:
    proxy = proxy_for(redis_url)
    proxies.append(proxy)
    procs.env["ADMIN_IDS"] = str(ADMIN)
    procs.worker("w1", "-c", "2")  # the workers reach Redis directly; only the bot loses it
    bot = procs.start("bot", "bot", REDIS_URL=via_proxy(redis_url, proxy))
    bot.wait_for_log("bot.polling")
    users = desk_users(live_sandbox)
    admin, staff, resident = users[ADMIN], users[STAFF], users[RESIDENT]

    # Staff has a request's notification with Accept; the resident is at the summary.
    rid = create(resident, "Broken light")
    notice = staff.wait(f"New request #{rid}")
    summary = to_summary(resident, "Leaking pipe")
    told_author, told_staff = accepted_texts(rid, "Broken light")
    assert count(live_sandbox, RESIDENT, told_author) == 0
    assert count(live_sandbox, RESIDENT, MY_LIST) == 0
    assert count(live_sandbox, ADMIN, STAFF_LIST) == 0
    assert created_ids(live_sandbox, RESIDENT) == [rid]
    bot_log_at_cut = len(bot.log())
    seq_at_cut = last_seq(live_sandbox, ADMIN, STAFF, RESIDENT)

    proxy.pause()
    cut_at = time.monotonic()
    resident.press(summary, "Submit")
    staff.press(notice, "Accept")
    resident.say("/my")
    admin.say("/staff")
    time.sleep(max(0.0, cut_at + 19 - time.monotonic()))

    # Nothing acknowledged: all four held at "Telegram" while the bot retries the first.
    pending = live_sandbox.stats()["updates_pending"]
    retrying = "update.retry" in bot.log()[bot_log_at_cut:]
    assert pending == 4 and retrying, (
        f"the outage's updates were acknowledged ({pending} pending) and not retried; "
        f"users got {got_since(live_sandbox, seq_at_cut, ADMIN, STAFF, RESIDENT)}; bot log:\n"
        + bot.log()[bot_log_at_cut:][-3000:]
    )
    assert bot.popen.poll() is None, "the bot died during the Redis outage"
    time.sleep(max(0.0, cut_at + 20 - time.monotonic()))
    proxy.resume()

    try:
        all_of(
            {
                "request created": lambda: len(created_ids(live_sandbox, RESIDENT)) >= 2,
                "author told of accept": lambda: count(live_sandbox, RESIDENT, told_author) >= 1,
                "staff answered accept": lambda: count(live_sandbox, STAFF, told_staff) >= 1,
                "/my listed": lambda: count(live_sandbox, RESIDENT, MY_LIST) >= 1,
                "/staff listed": lambda: count(live_sandbox, ADMIN, STAFF_LIST) >= 1,
            },
            60,
            lambda: f"users got {got_since(live_sandbox, seq_at_cut, ADMIN, STAFF, RESIDENT)}",
        )
    finally:
        assert_no_apology(live_sandbox, ADMIN, STAFF, RESIDENT)
    time.sleep(3)  # a duplicate would arrive now
    (first, second) = created_ids(live_sandbox, RESIDENT)
    assert first == rid and second != rid
    assert count(live_sandbox, RESIDENT, told_author) == 1
    assert count(live_sandbox, STAFF, told_staff) == 1
    assert count(live_sandbox, RESIDENT, MY_LIST) == 1
    assert count(live_sandbox, ADMIN, STAFF_LIST) == 1
    assert_no_apology(live_sandbox, ADMIN, STAFF, RESIDENT)
    assert requests_in(pg_url) == {
        rid: ("Broken light", "accepted"),
        second: ("Leaking pipe", "new"),
    }
    assert bot.popen.poll() is None


# -- PostgreSQL cut for the workers -------------------------------------------------------------


@pytest.mark.timeout(270)
def test_postgres_cut_for_30_s_while_users_act(
    proxies: list[TcpProxy],
    procs: Processes,
    live_sandbox: SandboxAPI,
    pg_url: str,
) -> None:
    proxy = proxy_for(pg_url)
    proxies.append(proxy)
    procs.env["ADMIN_IDS"] = str(ADMIN)
    worker = procs.worker("w1", "-c", "2", DATABASE_URL=via_proxy(pg_url, proxy))
    bot = procs.start("bot", "bot")  # the bot does not need the database
    bot.wait_for_log("bot.polling")
    users = desk_users(live_sandbox)
    staff, resident = users[STAFF], users[RESIDENT]

    rid = create(resident, "Broken light")
    notice = staff.wait(f"New request #{rid}")
    told_author, told_staff = accepted_texts(rid, "Broken light")
    seq_at_cut = last_seq(live_sandbox, STAFF, RESIDENT)

    proxy.pause()
    cut_at = time.monotonic()
    # The whole dialog works without the database; the workers get the commands.
    resident.press(to_summary(resident, "Leaking pipe"), "Submit")
    resident.say("/my")
    staff.press(notice, "Accept")
    time.sleep(max(0.0, cut_at + 30 - time.monotonic()))
    assert requests_in(pg_url) == {rid: ("Broken light", "new")}  # nothing applied meanwhile
    assert created_ids(live_sandbox, RESIDENT) == [rid]
    proxy.resume()

    try:
        all_of(
            {
                "request created": lambda: len(created_ids(live_sandbox, RESIDENT)) >= 2,
                "author told of accept": lambda: count(live_sandbox, RESIDENT, told_author) >= 1,
                "staff answered accept": lambda: count(live_sandbox, STAFF, told_staff) >= 1,
                "/my listed": lambda: count(live_sandbox, RESIDENT, MY_LIST) >= 1,
            },
            90,
            lambda: (
                f"users got {got_since(live_sandbox, seq_at_cut, STAFF, RESIDENT)}\n"
                f"--- worker log ---\n{worker.log()[-4000:]}"
            ),
        )
    finally:
        assert_no_apology(live_sandbox, ADMIN, STAFF, RESIDENT)
    time.sleep(3)  # a duplicate would arrive now
    (first, second) = created_ids(live_sandbox, RESIDENT)
    assert first == rid and second != rid
    assert count(live_sandbox, RESIDENT, told_author) == 1
    assert count(live_sandbox, STAFF, told_staff) == 1
    assert count(live_sandbox, RESIDENT, MY_LIST) == 1
    assert requests_in(pg_url) == {
        rid: ("Broken light", "accepted"),
        second: ("Leaking pipe", "new"),
    }
    assert worker.popen.poll() is None and bot.popen.poll() is None


# -- a worker host killed mid-command --------------------------------------------------------


@pytest.mark.timeout(300)
def test_worker_killed_mid_command_is_redelivered_to_another(
    procs: Processes, live_sandbox: SandboxAPI, pg_url: str
) -> None:
    first = procs.worker("w1", "-c", "1")
    procs.start("bot", "bot").wait_for_log("bot.polling")
    resident = Chat(live_sandbox, RESIDENT)
    resident.say("/start")
    resident.wait("Hello")

    # Mid-command, deterministically: the command's first write waits on a lock we hold.
    engine = create_engine(pg_url)
    try:
        with engine.connect() as blocker:
            blocker.execute(text("LOCK TABLE processed_commands IN SHARE MODE"))
            resident.press(to_summary(resident, "Leaking pipe"), "Submit")
            first.wait_for_log("commands.create_request[", timeout=30)

            def worker_waits_on_our_lock() -> bool:
                with engine.connect() as probe:
                    return bool(
                        probe.execute(
                            text(
                                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND wait_event_type = 'Lock' "
                                "AND query ILIKE '%processed_commands%'"
                            )
                        ).scalar()
                    )

            eventually(worker_waits_on_our_lock, 30, "the worker blocked inside the command")
            first.kill(signal.SIGKILL)  # the whole host: main process and pool children
            blocker.rollback()

        def nothing_applied() -> bool:
            with Session(engine) as s:
                return s.scalar(select(func.count()).select_from(Request)) == 0

        # The dead worker's transaction goes with its connection: nothing applied yet.
        eventually(nothing_applied, 30, "the killed worker's transaction rolled back")
        assert created_ids(live_sandbox, RESIDENT) == []

        second = procs.worker("w2", "-c", "1")
        ready_at = time.monotonic()
        try:
            eventually(
                lambda: created_ids(live_sandbox, RESIDENT) != [],
                150,
                "the command redelivered to the new worker and answered",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- new worker ---\n{second.log()[-4000:]}") from None
        print(f"answered {time.monotonic() - ready_at:.0f} s after the new worker was ready")
        time.sleep(3)  # a duplicate would arrive now
        (rid,) = created_ids(live_sandbox, RESIDENT)
        with Session(engine) as s:
            rows = s.execute(select(Request.id, Request.title)).all()
        assert [tuple(r) for r in rows] == [(rid, "Leaking pipe")]
        assert_no_apology(live_sandbox, RESIDENT)
    finally:
        engine.dispose()


# -- beat through a Redis outage ------------------------------------------------------------


@pytest.mark.timeout(240)
def test_beat_rides_out_a_redis_outage(
    proxies: list[TcpProxy], procs: Processes, redis_url: str
) -> None:
    proxy = proxy_for(redis_url)
    proxies.append(proxy)
    worker = procs.worker("w1", "-c", "1")  # reaches Redis directly
    beat = procs.start("beat", "beat", REDIS_URL=via_proxy(redis_url, proxy))
    eventually(lambda: relay_runs(worker) >= 1, 60, "beat sent the outbox relay")

    proxy.pause()
    cut_at = time.monotonic()
    while time.monotonic() < cut_at + 20:
        assert beat.popen.poll() is None, f"beat died in the Redis outage:\n{beat.log()[-4000:]}"
        time.sleep(0.5)
    runs_before = relay_runs(worker)
    proxy.resume()

    try:
        eventually(lambda: relay_runs(worker) > runs_before, 60, "a relay run after the outage")
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- beat ---\n{beat.log()[-4000:]}") from None
    assert beat.popen.poll() is None, f"beat died after the outage:\n{beat.log()[-4000:]}"
