"""A rolling restart under traffic, as a deploy does it: each worker, the bot and beat in turn
get SIGTERM and a successor, while users keep typing and a broadcast is being sent. Nothing is
lost and nothing doubled: every message gets exactly one answer, every resident the broadcast
exactly once; each process stops within the soft time limit (a warm shutdown finishes or
hands back what it holds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from db.models import User
from tests.support.chat import Chat
from tests.support.processes import Proc, Processes
from tests.support.sandbox_api import SandboxAPI
from workers.timing import SOFT_TIME_LIMIT_S

ADMIN = 3101
TALKERS = list(range(5101, 5121))  # 20 users who keep typing
QUIET = list(range(900_001, 900_241))  # 240 more residents who only get the broadcast
TEXT = "Lift maintenance on Friday 9:00-12:00"


def progress_state(pg_url: str, admin: int) -> str:
    """The broadcasts and the outbox rows to the admin's chat, with the process logs' say."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            broadcasts = conn.execute(
                text(
                    "SELECT b.id, b.state, b.total, b.fanned_out_at, b.heartbeat_at,"
                    " b.progress_message_id, b.finished_at, (SELECT json_object_agg(state, n)"
                    " FROM (SELECT state, count(*) n FROM outbox WHERE batch_id = b.id"
                    " GROUP BY state) c) FROM broadcasts b"
                )
            ).all()
            rows = conn.execute(
                text(
                    "SELECT id, method, state, attempts, dedupe_key, next_attempt_at, last_error"
                    " FROM outbox WHERE chat_id = :chat AND batch_id IS NULL ORDER BY id"
                ),
                {"chat": admin},
            ).all()
    finally:
        engine.dispose()
    return "broadcasts: " + repr(broadcasts) + "\nadmin's rows:\n" + "\n".join(map(repr, rows))


def graceful_stop(proc: Proc) -> float:
    """SIGTERM, as a deploy sends it; how long the process took to finish by itself."""
    started = time.monotonic()
    proc.stop()  # SIGKILL after 20 s: a process that needed it fails below
    took = time.monotonic() - started
    assert proc.popen.returncode == 0, (proc.name, proc.popen.returncode, proc.log()[-3000:])
    return took


@pytest.mark.timeout(600)
def test_a_rolling_restart_under_traffic_loses_and_doubles_nothing(
    procs: Processes, live_sandbox: SandboxAPI, pg_url: str
) -> None:
    procs.env.update(ADMIN_IDS=str(ADMIN), SCHEDULE_RELAY="5", USER_LIMIT_COMMANDS="")
    engine = create_engine(pg_url)
    with Session(engine) as s:
        s.add_all(User(telegram_id=r, role="resident", language="en") for r in QUIET)
        s.commit()
    engine.dispose()
    for user in QUIET:
        live_sandbox._call("POST", "/sandbox/users", {"id": user})
    running = {
        "w1": procs.worker("w1", "-c", "2"),
        "w2": procs.worker("w2", "-c", "2"),
        "beat": procs.start("beat", "beat"),
        "bot": procs.start("bot", "bot"),
    }
    running["bot"].wait_for_log("bot.polling")
    chats = {u: Chat(live_sandbox, u) for u in (ADMIN, *TALKERS)}
    for chat in chats.values():
        chat.say("/start")
    for chat in chats.values():
        chat.wait("Hello")
    admin = chats[ADMIN]
    admin.say("/broadcast")
    admin.press(admin.wait("Who should get the message?"), "Residents")
    admin.wait("Send the message for Residents")
    admin.say(TEXT)
    admin.press(admin.wait(f"Send this to {len(TALKERS) + len(QUIET)} recipients"), "Send")

    # Users keep typing through the whole restart: ~4 messages a second, each one answered.
    sent = dict.fromkeys(TALKERS, 0)
    stop_typing = threading.Event()

    def type_away() -> None:
        n = 0
        while not stop_typing.is_set():
            user = TALKERS[n % len(TALKERS)]
            chats[user].say("/my" if n % 2 else "/start")
            sent[user] += 1
            n += 1
            time.sleep(0.25)

    typist = threading.Thread(target=type_away, daemon=True)
    typist.start()
    took: dict[str, float] = {}
    try:
        time.sleep(1.0)  # the broadcast is being sent: the first worker goes mid-batch
        successors: list[tuple[str, Callable[[], Proc]]] = [
            ("w1", lambda: procs.worker("w1b", "-c", "2")),
            ("w2", lambda: procs.worker("w2b", "-c", "2")),
            ("bot", lambda: procs.start("bot2", "bot")),
            ("beat", lambda: procs.start("beat2", "beat")),
        ]
        for name, successor in successors:
            took[name] = graceful_stop(running[name])
            running[name] = successor()
            if name == "bot":
                running[name].wait_for_log("bot.polling")
            time.sleep(2.0)
    finally:
        stop_typing.set()
        typist.join()

    def answers(user: int) -> int:
        texts = [m.get("text") or "" for m in live_sandbox.messages(user)]
        return sum(1 for t in texts if t != TEXT)

    expected = {u: 1 + sent[u] for u in TALKERS}  # the first /start, then what was typed
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = {u: answers(u) for u in TALKERS}
        if got == expected:
            break
        time.sleep(1.0)
    time.sleep(3.0)  # a duplicate would come now
    got = {u: answers(u) for u in TALKERS}
    assert got == expected, {u: (got[u], expected[u]) for u in TALKERS if got[u] != expected[u]}

    def broadcasts(user: int) -> int:
        return sum(1 for m in live_sandbox.messages(user) if m.get("text") == TEXT)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(broadcasts(u) == 0 for u in QUIET):
        time.sleep(1.0)
    per_resident = {u: broadcasts(u) for u in (*TALKERS, *QUIET)}
    assert {u: n for u, n in per_resident.items() if n != 1} == {}
    try:
        admin.wait(lambda m: "finished:" in (m.get("text") or ""), timeout=60)
    except AssertionError as missing:
        # Seen once in CI (every resident served, the final edit never came): what the database
        # says of the broadcast and of the admin's messages, to tell where it stopped.
        raise AssertionError(f"{missing}\n{progress_state(pg_url, ADMIN)}") from None
    # Warm shutdowns: done or handed back within the soft time limit, never killed.
    assert all(t < SOFT_TIME_LIMIT_S for t in took.values()), took
    print(f"stopped in {took}, {sum(sent.values())} messages typed meanwhile")
    assert sum(sent.values()) >= 40
