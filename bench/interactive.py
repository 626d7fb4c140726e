"""Interactive latency and throughput: simulated users drive the real bot, broker, workers,
PostgreSQL (1,000,000 requests) and the sandbox, open loop at fixed offered rates, beside the
ceiling of a bare Celery no-op round trip on the same broker.

    .venv/bin/python -m bench.interactive [--workers 1,2,4] [--rates 10,50,100,200]
                                          [--seconds 20] [--users 1000] [--staff 100]
                                          [--timeout 10] [--reuse] [--reseed] [--profile]

About 1 + (seconds + 12) x rates x workers / 60 minutes (defaults: ~7 minutes), plus the copy of
the data set (~1 minute; none with --reuse) and its seeding when it is missing (~1-6 minutes).
--profile adds ~1 minute.

Services: PostgreSQL on 127.0.0.1:5432 and Redis database 10 (flushed at the start, between
worker counts and at the end: the broker, the limiter, the bot's dialogs, the users' quotas).
The database is zavhoz_bench_interactive, a copy (CREATE DATABASE ... TEMPLATE) of the reports
benchmark's zavhoz_bench_reports (bench/report_seed.py: 1,000,000 requests, 100,000 users;
seeded when missing), migrated to head (bench/isolation.py's prepare_database); --reuse keeps
the copy a previous run left (it is always kept).

Processes, as bench/isolation.py starts them (each its own process group, stopped on exit and
on Ctrl-C; logs in a temporary directory): the sandbox Bot API in this process with its global
flood limit lifted to 1,000 sends/s (per-chat limits stay: 5 a sliding second), the real bot
(`zavhoz bot`, long polling) and, per worker count K, the Procfile's `worker` line as written
there except `--concurrency K`: one `zavhoz worker` on every queue whose prefork pool has K
processes (K=4 is the Procfile's own line). Workers and bot run with RATE_BOT_PER_SECOND=1000
(the shared limiter's global rate, matching the double); the per-chat pacing (1/s, burst 3) is
the default. No beat.

Users: --users seeded residents (authors of open requests first), and --staff seeded staff
members; every user's chat is registered in the sandbox (all 100,000, so notices to anyone
land). Before the load every staff member and admin is marked unreachable, and a bench staff
member again after each of their replies: the design sends every new request (and a resident's
comment on an unassigned request) to every reachable staff member, so 300 staff would turn each
submission into 300 notices and a few bench staff into chats flooded beyond their 1/s pacing.
Sessions (each step one update, posted only after the previous step's reply, or its timeout);
a resident's next session is drawn with these weights:
- my (35 %): `/my`.
- card (30 %): `/my`, then the list's button of their newest open request (the card).
- comment (17.5 %): `/my`, a request's button, the card's Comment, the comment's text.
- new (17.5 %): the /new dialog to submission: `/new`, title, description, place (typed),
  a priority button, Skip (no files), Submit. title..Skip are answered by the bot alone.
A staff member's session (when the scheduler picks one: staff/(users+staff) of sessions):
`/r N` on an open request of a resident outside the bench, then Accept when it is new (each
such request taken once), otherwise Priority and a priority (the bot asks; the worker changes
it and tells the author).
The load is open loop: a scheduler issues one update every 1/rate s whatever the replies do,
each time for a user in a session whose next step is due, else for the idle user free the
longest (≥ --users + --staff distinct users). Free means: their last reply in, their last update
at least --gap-s ago (1.5 s by default) and their last reply 0.3 s ago; a dialog's 7 steps make
10 sends to its chat in ~10 s, within the bot's 1 message/s, burst 3 per-chat pacing. Sessions
carry over from one rate to the next (not between worker counts: Redis is flushed). A tick
that finds nobody free is counted as "no free user" (an error); a user whose update had no
reply in --timeout is left out until the next worker count (a late reply would be mistaken).

Columns (one line per worker count and offered rate):
- offered/s, sent, replied: the rate asked for, the updates posted, those answered.
- achieved/s: replied updates over the time from the first update to the last reply.
- % ceil: achieved/s over the bare Celery no-op rate with the same pool size (below).
- p50, p95, p99, max ms: per update, from the moment just before the driver posted the user's
  message or button press to the sandbox (the update is available to getUpdates from then) to
  the sandbox accepting the first send* (sendMessage, sendPhoto...) to that chat: the bot's own
  question for a dialog step, the worker's reply for a command. An update without a reply counts
  as infinitely slow (">T": no reply in --timeout s).
- errors: no reply within --timeout, replies that are refusals or errors (texts of the
  refused.*, error, stale and limit kinds), posts that failed, ticks with no free user.
Under the table: the ceiling per pool size (round trip p50 of one task at a time, and
completions/s for a burst), latency by step kind per line (worker commands and bot-only steps),
the verdicts against the issue's targets (p99 <= 50 ms at 50 updates/s with 2 worker processes;
sustainable throughput >= 40 % of the no-op rate), and with --profile the top entries of a
cProfile of the command path: run_command (workers/command_tasks.py, the task body without
Celery) for a few hundred representative commands against the same database, sends included.

The ceiling: a Celery app defined here (`noop_app`) with our settings that matter for a round
trip (JSON, acks late, prefetch 1, results ignored, task events on), one worker process with a
prefork pool of K (`celery -A bench.interactive:noop_app worker -c K`). Its task does nothing
but count itself (one Redis INCR or RPUSH, the way to see it end to end). Round trip: publish one,
wait for it, 100 times. Rate: publish --noop-tasks at once, completions over the time to the last.

Exits non-zero only when the setup fails, never on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import heapq
import io
import math
import os
import pstats
import queue
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from bench.broadcast import Sandbox, flush_redis
from bench.embedded import _cpu_s
from bench.isolation import (
    Children,
    cpu_s,
    machine_busy_s,
    postgres_s,
    prepare_database,
    procfile_commands,
    query,
)
from bench.reports import DEFAULT_URL as BASE_URL
from bench.reports import database_name, render_table
from bench.scheduler_soak import NOT_INHERITED, Proc, percentile

RUN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_interactive"
REDIS_URL = "redis://127.0.0.1:6379/10"  # 11, 12 and 13 belong to other work: never touch them
ROOT = Path(__file__).resolve().parent.parent
FLOOD_LIMIT = 1000  # the double's global limit, lifted (and RATE_BOT_PER_SECOND)
NOOP_QUEUE = "zavhoz-bench-noop"
NOOP_COUNT = "zavhoz-bench-noop:count"
TARGET_RATE, TARGET_WORKERS, TARGET_P99_MS, TARGET_SHARE = 50.0, 2, 50.0, 0.40
SESSIONS = (("my", 0.35), ("card", 0.30), ("comment", 0.175), ("new", 0.175))
# Steps answered by the bot alone (no worker involved).
BOT_ONLY = {"new", "title", "description", "place", "priority", "skip", "comment?", "prio?"}
PROGRESS_S = 5.0
PLACES = ("entrance 1", "entrance 2", "lift", "basement", "stairwell 3", "roof")


# --- The ceiling: a bare Celery no-op ---------------------------------------------------------


def _noop_app() -> Celery:
    app = Celery("zavhoz-bench-noop", broker=os.environ.get("ZAVHOZ_BENCH_NOOP_BROKER", REDIS_URL))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_default_queue=NOOP_QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


noop_app = _noop_app()
_redis_client: Any = None


@noop_app.task(name="bench.noop")
def noop(reply_to: str | None = None) -> None:
    """Nothing, then counted (so the bench sees it done)."""
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(noop_app.conf.broker_url)
    if reply_to:
        _redis_client.rpush(reply_to, "1")
    else:
        _redis_client.incr(NOOP_COUNT)


@dataclass
class Ceiling:
    pool: int
    rtt_ms: list[float]
    rate: float
    tasks: int
    cpu_ms: float  # the machine's busy CPU time per no-op task of the burst


# --- Where the CPU goes -----------------------------------------------------------------------


def redis_s() -> float:
    """CPU seconds of the Redis server (found by its process name)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "redis-server":
                total += _cpu_s(int(entry.name))
    return total


@dataclass
class CpuSample:
    by_part: dict[str, float]  # machine, this, bot, workers, redis: CPU seconds so far
    backends: dict[int, float]  # PostgreSQL backends of the bench database

    @classmethod
    def take(cls, children: Children, database: str) -> CpuSample:
        return cls({**cpu_s(children), "redis": redis_s()}, postgres_s(database))

    def spent_since(self, before: CpuSample) -> dict[str, float]:
        """CPU seconds per part between two samples; "other" is the machine's rest (PostgreSQL's
        own processes, the kernel, everything else on the machine)."""
        out = {k: v - before.by_part.get(k, 0.0) for k, v in self.by_part.items()}
        # A backend that started meanwhile counts whole; one gone by now is left out.
        out["postgres"] = sum(v - before.backends.get(pid, 0.0) for pid, v in self.backends.items())
        out["other"] = out["machine"] - sum(v for k, v in out.items() if k != "machine")
        return out


def measure_ceiling(args: argparse.Namespace, pool: int, run_dir: Path) -> Ceiling:
    import redis

    flush_redis(args.redis_url)
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env["ZAVHOZ_BENCH_NOOP_BROKER"] = args.redis_url
    log_path = run_dir / f"noop-{pool}.log"
    argv = [sys.executable, "-m", "celery", "-A", "bench.interactive:noop_app", "worker"]
    argv += ["-c", str(pool), "-P", "prefork", "-Q", NOOP_QUEUE, "-n", f"noop{pool}@%h"]
    argv += ["--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    client = redis.Redis.from_url(args.redis_url)
    try:
        deadline = time.monotonic() + 90
        while not (noop_app.control.ping(timeout=1.0) or []):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the no-op worker did not start:\n{log_path.read_text()}")
        for _ in range(pool * 4):  # every pool process's first task
            noop.apply_async(kwargs={"reply_to": "warm"}, queue=NOOP_QUEUE)
        for _ in range(pool * 4):
            client.blpop(["warm"], timeout=30)
        rtt = []
        for i in range(100):
            key = f"rtt:{i}"
            t0 = time.perf_counter()
            noop.apply_async(kwargs={"reply_to": key}, queue=NOOP_QUEUE)
            if client.blpop([key], timeout=30) is None:
                raise RuntimeError("a no-op round trip took over 30 s")
            rtt.append((time.perf_counter() - t0) * 1000)
        client.delete(NOOP_COUNT)
        n = args.noop_tasks
        busy = machine_busy_s()
        t0 = time.perf_counter()
        with noop_app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(queue=NOOP_QUEUE, producer=producer)
        deadline = time.monotonic() + 120
        while int(client.get(NOOP_COUNT) or 0) < n and time.monotonic() < deadline:
            time.sleep(0.002)
        done = int(client.get(NOOP_COUNT) or 0)
        elapsed = time.perf_counter() - t0
        cpu_ms = (machine_busy_s() - busy) * 1000 / max(1, done)
        return Ceiling(pool, sorted(rtt), done / elapsed, done, cpu_ms)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=10)
        flush_redis(args.redis_url)


# --- The site's users -------------------------------------------------------------------------


@dataclass
class Cast:
    residents: list[int]  # Telegram ids
    staff: list[int]
    new_pool: list[int]  # new requests of residents outside the bench: each accepted once
    open_pool: list[int]  # open requests of residents outside the bench: priority changes
    own: dict[int, int]  # resident -> their newest open request (or newest at all)
    everyone: list[int]  # every Telegram id of the data set (chats in the sandbox)


def cast(url: str, residents: int, staff: int) -> Cast:
    open_statuses = "('new', 'accepted', 'in_progress', 'reopened')"
    rows = query(
        url,
        "SELECT u.telegram_id FROM users u WHERE u.role = 'resident' AND u.erased_at IS NULL"
        " AND u.telegram_id IS NOT NULL AND EXISTS (SELECT 1 FROM requests r WHERE"
        " r.author_id = u.id) ORDER BY EXISTS (SELECT 1 FROM requests r WHERE r.author_id ="
        f" u.id AND r.status IN {open_statuses}) DESC, hashint8(u.telegram_id) LIMIT %s",
        (residents,),
    )
    bench = [int(r[0]) for r in rows]
    staff_rows = query(
        url,
        "SELECT telegram_id FROM users WHERE role = 'staff' AND telegram_id IS NOT NULL"
        " ORDER BY hashint8(telegram_id) LIMIT %s",
        (staff,),
    )
    others = query(
        url,
        "SELECT r.id, r.status FROM requests r JOIN users u ON u.id = r.author_id WHERE"
        f" r.status IN {open_statuses} AND u.telegram_id IS NOT NULL AND NOT"
        " (u.telegram_id = ANY(%s)) ORDER BY hashint8(r.id)",
        (bench,),
    )
    everyone = query(url, "SELECT telegram_id FROM users WHERE telegram_id IS NOT NULL")
    own = query(
        url,
        "SELECT DISTINCT ON (u.telegram_id) u.telegram_id, r.id FROM users u JOIN requests r ON"
        " r.author_id = u.id WHERE u.telegram_id = ANY(%s) ORDER BY u.telegram_id, r.status IN"
        f" {open_statuses} DESC, r.id DESC",
        (bench,),
    )
    return Cast(
        bench,
        [int(r[0]) for r in staff_rows],
        [int(i) for i, s in others if s == "new"],
        [int(i) for i, s in others if s != "new"],
        {int(tg): int(rid) for tg, rid in own},
        [int(r[0]) for r in everyone],
    )


def staff_unreachable(url: str, telegram_ids: list[int] | None = None) -> None:
    """Every staff member and admin (or just these) unreachable: no new-request notices."""
    if telegram_ids is None:
        query(url, "UPDATE users SET reachable = false WHERE role IN ('staff', 'admin')")
    else:
        query(
            url,
            "UPDATE users SET reachable = false WHERE telegram_id = ANY(%s) AND role <> 'resident'",
            (telegram_ids,),
        )


# --- Replies, as the sandbox accepts them -----------------------------------------------------


@dataclass
class Sent:
    t: float  # Unix time the sandbox accepted it
    chat: int
    method: str
    payload: dict[str, Any] | None


def hook_sandbox(state: Any, out: queue.SimpleQueue[Sent]) -> None:
    """Every accepted send, with the message it stored, as it happens (on the sandbox's
    thread: one append). The same clock and moment as the sandbox's own send log."""
    last: dict[int, dict[str, Any]] = {}
    store, log_send = state.store, state._log_send

    def stored(msg: Any) -> Any:
        if msg.from_bot:
            last[msg.chat_id] = msg.payload
        return store(msg)

    def logged(chat_id: int | None, method: str | None, accepted: bool) -> float:
        now: float = log_send(chat_id, method, accepted)
        if accepted and chat_id is not None and method is not None:
            out.put(Sent(now, chat_id, method, last.pop(chat_id, None)))
        return now

    state.store, state._log_send = stored, logged


def button(payload: dict[str, Any] | None, prefix: str) -> str | None:
    markup = (payload or {}).get("reply_markup") or {}
    for row in markup.get("inline_keyboard", []):
        for b in row:
            data = b.get("callback_data") or ""
            if data.startswith(prefix):
                return str(data)
    return None


def error_texts() -> list[re.Pattern[str]]:
    """Every refusal and error text of both languages as a pattern (placeholders match
    anything, markup dropped as the sandbox drops it): a reply matching one is an error."""
    import html

    from core.texts import _CATALOGUE

    out = []
    for texts in _CATALOGUE.values():
        for key, text in texts.items():
            if key.startswith(("refused.", "too_fast.", "command.failed", "busy", "stale")) or (
                ".error." in key or key.endswith(".stale")
            ):
                plain = html.unescape(re.sub(r"<[^>]+>", "", text))
                parts = re.split(r"\{[^}]*\}", plain)
                out.append(re.compile(".*?".join(re.escape(x) for x in parts), re.S))
    return out


# --- Users and sessions -----------------------------------------------------------------------


@dataclass
class Action:
    user: User
    step: str
    text: str | None = None
    data: str | None = None
    message_id: int = 0
    t: float = 0.0  # Unix time just before the post
    reply_t: float | None = None
    error: str | None = None


@dataclass
class User:
    chat: int
    staff: bool
    own: int | None = None  # a request to open and comment on
    steps: list[str] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)  # bot messages with buttons
    target: int | None = None  # staff: the request opened
    stuck: bool = False  # no reply in time: left out for the rest of the worker count


class Driver:
    """Open-loop load over many users; replies matched from the sandbox's hook."""

    def __init__(
        self, args: argparse.Namespace, sandbox: Sandbox, sent: queue.SimpleQueue[Sent], c: Cast
    ) -> None:
        self.args, self.sandbox, self.sent = args, sandbox, sent
        self.rng = random.Random(20261201)
        self.users = [User(chat, False, c.own.get(chat)) for chat in c.residents]
        self.users += [User(chat, True) for chat in c.staff]
        self.by_chat = {u.chat: u for u in self.users}
        self.new_pool, self.open_pool = list(c.new_pool), list(c.open_pool)
        self.errors = error_texts()
        self.lock = threading.Lock()
        self.pending: dict[int, Action] = {}
        self.staff_done: list[int] = []  # staff who got a reply: unreachable again
        self.serial = 0

    # Sessions ---------------------------------------------------------------------------------

    def new_session(self, user: User) -> None:
        if user.staff and (self.new_pool or self.open_pool):
            user.steps = ["r", "accept"] if self.new_pool else ["r", "prio?", "prio"]
            pool = self.new_pool if self.new_pool else self.open_pool
            user.target = pool.pop() if user.steps[1] == "accept" else self.rng.choice(pool)
            return
        kind = self.rng.choices([k for k, _ in SESSIONS], [w for _, w in SESSIONS])[0]
        user.steps = {
            "my": ["my"],
            "card": ["my", "open"],
            "comment": ["my", "open", "comment?", "comment"],
            "new": ["new", "title", "description", "place", "priority", "skip", "submit"],
        }[kind]

    def next_action(self, user: User) -> Action | None:
        """The user's next update, or None when the session cannot go on (no such button)."""
        if not user.steps:
            self.new_session(user)
        step = user.steps.pop(0)
        self.serial += 1
        n = self.serial
        a = Action(user, step)
        if step in ("my", "new"):
            a.text = f"/{step}"
        elif step == "r":
            a.text = f"/r {user.target}"
        elif step == "title":
            a.text = f"Bench leak {n}"
        elif step == "description":
            a.text = f"Water drips from the ceiling, seen at {n}."
        elif step == "place":
            a.text = self.rng.choice(PLACES)
        elif step == "comment":
            a.text = f"Still there, {n}."
        else:
            prefix = {
                "open": f"rq:open:{user.own}:" if user.own else "rq:open:",
                "comment?": "rq:comment:",
                "priority": "np:p:",
                "skip": "np:s:",
                "submit": "np:ok:",
                "accept": f"rq:accept:{user.target}:",
                "prio?": f"rq:priority:{user.target}:",
                "prio": f"rq:setprio:{user.target}:",
            }[step]
            last = next((m for m in user.recent if button(m, prefix)), None)
            if last is None and step == "open":  # their request is not on the first page
                prefix = "rq:open:"
                last = next((m for m in user.recent if button(m, prefix)), None)
            data = button(last, prefix)
            if data is None or last is None:
                user.steps = []
                return None
            if step == "prio":  # a priority other than its current one, at random
                options = [
                    str(b.get("callback_data"))
                    for row in (last.get("reply_markup") or {}).get("inline_keyboard", [])
                    for b in row
                    if str(b.get("callback_data") or "").startswith(prefix)
                ]
                data = self.rng.choice(options)
            a.data, a.message_id = data, int(last["message_id"])
        return a

    # Posting and matching ---------------------------------------------------------------------

    def post(self, a: Action) -> None:
        user = a.user
        profile = {"first_name": f"u{user.chat}", "language_code": "en"}
        with self.lock:
            a.t = time.time()
            self.pending[user.chat] = a
        try:
            if a.data is not None:
                body = {"user_id": user.chat, "message_id": a.message_id, "data": a.data}
                self.sandbox.call("POST", "/sandbox/callbacks", {**body, **profile})
            else:
                body = {"user_id": user.chat, "text": a.text, **profile}
                self.sandbox.call("POST", "/sandbox/messages", body)
        except OSError as exc:
            with self.lock:
                a.error = f"post failed: {type(exc).__name__}"
                self.pending.pop(user.chat, None)

    def match(self, timeout: float) -> list[Action]:
        """Replies that came: their actions completed (returned)."""
        done: list[Action] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = self.sent.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return done
            with self.lock:
                a = self.pending.get(s.chat)
                if s.payload is not None and button(s.payload, ""):
                    user = self.by_chat.get(s.chat)
                    if user is not None:
                        user.recent = [s.payload, *user.recent[:4]]
                if a is None or s.t < a.t or not s.method.startswith("send"):
                    continue
                del self.pending[s.chat]
            a.reply_t = s.t
            text = str((s.payload or {}).get("text") or "")
            if any(p.match(text) for p in self.errors):
                a.error = f"reply: {text[:60]}"
            if a.user.staff:
                with self.lock:
                    self.staff_done.append(a.user.chat)
            done.append(a)
            if not self.sent.empty():
                continue
            return done


@dataclass
class Result:
    workers: int
    rate: float
    seconds: float
    actions: list[Action]
    no_free: int
    start: float
    last_reply: float
    timeout: float
    notes: list[str] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # by part, over the rate's run

    @property
    def replied(self) -> list[Action]:
        return [a for a in self.actions if a.reply_t is not None]

    def latencies(self, actions: list[Action] | None = None) -> list[float]:
        """ms; an update without a reply is infinitely slow."""
        chosen = self.actions if actions is None else actions
        return sorted(
            math.inf if a.reply_t is None else (a.reply_t - a.t) * 1000 for a in chosen if a.t
        )

    @property
    def achieved(self) -> float:
        span = self.last_reply - self.start
        return len(self.replied) / span if span > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(1 for a in self.actions if a.error is not None) + self.no_free


def run_rate(
    driver: Driver, workers: int, rate: float, seconds: float, gap: float, timeout: float
) -> Result:
    """One offered rate: an update every 1/rate s, for a user in a session whose next step is
    due, else for the idle user free the longest. Sessions carry over from the last rate."""
    ready: list[tuple[float, int, User]] = []  # mid-session: (free from, tie, user)
    idle: list[tuple[float, int, User]] = []  # between sessions
    order = [u for u in driver.users if not u.stuck]
    driver.rng.shuffle(order)  # residents and staff mixed from the first tick
    for i, user in enumerate(order):
        heapq.heappush(ready if user.steps else idle, (0.0, i, user))
    tie = len(driver.users)
    actions: list[Action] = []
    no_free = 0
    inflight: dict[int, Action] = {}
    stop = threading.Event()
    completed: queue.SimpleQueue[Action] = queue.SimpleQueue()

    def matcher() -> None:
        while not stop.is_set():
            for a in driver.match(0.05):
                completed.put(a)

    def unreachable() -> None:
        """Staff who acted are reachable again (every command says so): not for long."""
        while not stop.wait(0.2):
            with driver.lock:
                ids, driver.staff_done = driver.staff_done, []
            if ids:
                staff_unreachable(driver.args.database_url, ids)

    def settle(now: float) -> None:
        nonlocal tie
        while True:
            try:
                a = completed.get_nowait()
            except queue.Empty:
                break
            if inflight.pop(a.user.chat, None) is a:
                assert a.reply_t is not None
                tie += 1
                free = max(a.t + gap, a.reply_t + 0.3)
                heapq.heappush(ready if a.user.steps else idle, (free, tie, a.user))
        for chat, a in list(inflight.items()):
            if a.error is not None and a.reply_t is None:  # the post failed
                del inflight[chat]
                tie += 1
                a.user.steps = []
                heapq.heappush(idle, (now + gap, tie, a.user))
            elif a.reply_t is None and now - a.t > timeout:
                del inflight[chat]
                with driver.lock:
                    driver.pending.pop(chat, None)
                a.error = "no reply"
                a.user.stuck = True

    thread = threading.Thread(target=matcher, name="matcher", daemon=True)
    thread.start()
    marker = threading.Thread(target=unreachable, name="unreachable", daemon=True)
    marker.start()
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="post")
    start = time.time()
    t0 = time.monotonic()
    last_progress = t0
    n = 0
    try:
        while (due := t0 + n / rate) - t0 < seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            n += 1
            now = time.time()
            settle(now)
            action = None
            while action is None:
                if ready and ready[0][0] <= now:
                    _, _, user = heapq.heappop(ready)
                elif idle and idle[0][0] <= now:
                    _, _, user = heapq.heappop(idle)
                else:
                    break
                action = driver.next_action(user) or driver.next_action(user)
                if action is None:
                    tie += 1
                    heapq.heappush(idle, (now + gap, tie, user))
            if action is None:
                no_free += 1
                continue
            actions.append(action)
            inflight[action.user.chat] = action
            pool.submit(driver.post, action)
            if time.monotonic() - last_progress >= PROGRESS_S:
                last_progress = time.monotonic()
                got = [a for a in actions if a.reply_t is not None]
                ms = sorted((a.reply_t - a.t) * 1000 for a in got if a.reply_t is not None)
                line = f"   [K={workers} {rate:g}/s +{time.monotonic() - t0:3.0f} s] sent "
                line += f"{len(actions)}, replied {len(got)}, in flight {len(inflight)}"
                if ms:
                    line += f", p50 {percentile(ms, 0.5):.0f} ms, max {ms[-1]:.0f} ms"
                print(line + (f", no free user {no_free}" if no_free else ""), flush=True)
        deadline = time.monotonic() + timeout + 1
        while inflight and time.monotonic() < deadline:
            time.sleep(0.05)
            settle(time.time())
        settle(time.time() + timeout + 1)
    finally:
        pool.shutdown(wait=True)
        stop.set()
        thread.join(5)
        marker.join(5)
    last = max((a.reply_t for a in actions if a.reply_t is not None), default=start)
    return Result(workers, rate, seconds, actions, no_free, start, last, timeout)


def by_kind(r: Result) -> str:
    worker = [a for a in r.actions if a.step not in BOT_ONLY]
    bot = [a for a in r.actions if a.step in BOT_ONLY]
    parts = []
    for name, group in (("worker commands", worker), ("bot-only steps", bot)):
        ms = r.latencies(group)
        if ms:
            parts.append(
                f"{name} {len(group)}: p50 {fmt_ms(percentile(ms, 0.5), r.timeout)}, p99 "
                f"{fmt_ms(percentile(ms, 0.99), r.timeout)} ms"
            )
    steps: dict[str, list[Action]] = defaultdict(list)
    for a in r.actions:
        steps[a.step].append(a)
    detail = ", ".join(
        f"{k} {fmt_ms(percentile(r.latencies(v), 0.5), r.timeout)}"
        for k, v in sorted(steps.items())
    )
    return "; ".join(parts) + f"; p50 ms by step: {detail}"


def fmt_ms(value: float, timeout: float) -> str:
    return f">{timeout * 1000:.0f}" if math.isinf(value) else f"{value:.0f}"


def table(results: list[Result], ceilings: dict[int, Ceiling]) -> str:
    head = ["workers", "offered/s", "sent", "replied", "achieved/s", "% ceil", "p50 ms",
            "p95 ms", "p99 ms", "max ms", "errors"]  # fmt: skip
    rows = []
    for r in results:
        ms = r.latencies()
        ceiling = ceilings.get(r.workers)
        share = f"{100 * r.achieved / ceiling.rate:.1f}" if ceiling and ceiling.rate else "-"

        def p(q: float, ms: list[float] = ms, r: Result = r) -> str:
            return fmt_ms(percentile(ms, q), r.timeout) if ms else "-"

        rows.append([
            str(r.workers), f"{r.rate:g}", str(len(r.actions)), str(len(r.replied)),
            f"{r.achieved:.1f}", share, p(0.5), p(0.95), p(0.99),
            fmt_ms(ms[-1], r.timeout) if ms else "-", str(r.errors),
        ])  # fmt: skip
    return render_table(head, rows)


CPU_PARTS = ("bot", "workers", "postgres", "redis", "this", "other")


def cpu_table(results: list[Result], ceilings: dict[int, Ceiling]) -> str:
    """CPU milliseconds per replied update, by process, beside a no-op task's: on a machine
    with N cores no pipeline gets past N x 1000 / (its ms per update) updates/s."""
    cores = os.cpu_count() or 1
    head = ["workers", "offered/s", "machine ms/update", *(f"{p} ms" for p in CPU_PARTS),
            "no-op ms/task", "bound/s", "40 % needs"]  # fmt: skip
    rows = []
    for r in results:
        n = len(r.replied)
        if not r.cpu_s or not n:
            continue
        per = {k: v * 1000 / n for k, v in r.cpu_s.items()}
        ceiling = ceilings.get(r.workers)
        noop = f"{ceiling.cpu_ms:.2f}" if ceiling else "-"
        # At 40 % of the ceiling's rate the machine has this much CPU per update.
        need = f"<= {cores * 1000 / (TARGET_SHARE * ceiling.rate):.1f} ms" if ceiling else "-"
        rows.append([
            str(r.workers), f"{r.rate:g}", f"{per['machine']:.1f}",
            *(f"{per.get(p, 0.0):.1f}" for p in CPU_PARTS), noop,
            f"{cores * 1000 / per['machine']:.0f}" if per["machine"] > 0 else "-", need,
        ])  # fmt: skip
    note = (
        f"CPU per replied update ({cores} cores): bot = `zavhoz bot`, workers = the worker's "
        "process tree, postgres = the bench database's backends, redis = redis-server, this = "
        "the sandbox and the load (this process), other = the rest of the machine's busy time; "
        "bound/s = cores x 1000 / machine ms (the rate at which the machine is saturated)"
    )
    return render_table(head, rows) + "\n" + note if rows else note


def error_note(r: Result) -> str | None:
    kinds: dict[str, int] = defaultdict(int)
    for a in r.actions:
        if a.error is not None:
            kinds[f"{a.step}: {a.error}"] += 1
    if r.no_free:
        kinds["no free user at the tick"] = r.no_free
    if not kinds:
        return None
    return "errors: " + "; ".join(
        f"{n} x {k}" for k, n in sorted(kinds.items(), key=lambda x: -x[1])
    )


def sustained(r: Result) -> bool:
    """Kept up: at most 1 % errors and the rate delivered."""
    return r.errors <= 0.01 * max(1, len(r.actions)) and r.achieved >= 0.95 * min(
        r.rate, len(r.actions) / r.seconds
    )


def verdicts(results: list[Result], ceilings: dict[int, Ceiling]) -> list[str]:
    lines = []
    at = [r for r in results if r.workers == TARGET_WORKERS and r.rate == TARGET_RATE]
    if at:
        ms = at[0].latencies()
        p99 = percentile(ms, 0.99)
        met = "met" if p99 <= TARGET_P99_MS else "MISSED"
        lines.append(
            f"target 1: p99 <= {TARGET_P99_MS:g} ms at {TARGET_RATE:g} updates/s with "
            f"{TARGET_WORKERS} worker processes: p99 {fmt_ms(p99, at[0].timeout)} ms: {met}"
        )
    else:
        lines.append(
            f"target 1: not measured (needs --workers with {TARGET_WORKERS} and --rates with "
            f"{TARGET_RATE:g})"
        )
    for k in sorted({r.workers for r in results}):
        ceiling = ceilings.get(k)
        kept = [r for r in results if r.workers == k and sustained(r)]
        top = max(results_for := [r for r in results if r.workers == k], key=lambda r: r.rate)
        if ceiling is None or not ceiling.rate:
            lines.append(f"target 2, {k} worker processes: no ceiling measured")
            continue
        if not kept:
            lines.append(
                f"target 2, {k} worker processes: no offered rate was sustained (of "
                f"{', '.join(f'{r.rate:g}' for r in results_for)}/s); ceiling "
                f"{ceiling.rate:.0f}/s: MISSED"
            )
            continue
        best = max(kept, key=lambda r: r.achieved)
        share = best.achieved / ceiling.rate
        bound = " (at least: the highest rate tried was sustained)" if best is top else ""
        met = "met" if share >= TARGET_SHARE else "MISSED"
        lines.append(
            f"target 2, {k} worker processes: sustained {best.achieved:.1f} updates/s (offered "
            f"{best.rate:g}){bound} = {100 * share:.1f} % of the no-op ceiling "
            f"{ceiling.rate:.0f}/s (target >= {100 * TARGET_SHARE:.0f} %): {met}"
        )
    return lines


# --- The profile ------------------------------------------------------------------------------


def profile_commands(args: argparse.Namespace, c: Cast, count: int) -> str:
    """cProfile of run_command (the task body without Celery) in this process, for `count`
    commands in the load's proportions, against the same database and sandbox."""
    from core import commands as cm
    from core.domain import Action as Verb
    from core.domain import Priority
    from workers.command_tasks import run_command
    from workers.commands import HANDLERS

    rng = random.Random(7)
    run = uuid.uuid4().hex[:8]
    residents, staff = c.residents, c.staff
    own = {
        int(tg): int(rid)
        for tg, rid in query(
            args.database_url,
            "SELECT DISTINCT ON (u.telegram_id) u.telegram_id, r.id FROM users u JOIN requests r"
            " ON r.author_id = u.id WHERE u.telegram_id = ANY(%s) ORDER BY u.telegram_id, r.id"
            " DESC",
            (residents,),
        )
    }
    new_pool, open_pool = list(c.new_pool), list(c.open_pool)

    def actor(tg: int) -> cm.Actor:
        return cm.Actor(user_id=tg, chat_id=tg, language="en", first_name=f"u{tg}")

    def build(i: int) -> Any:
        common = {
            "idempotency_key": f"bench-profile:{run}:{i}",
            "issued_at": dt.datetime.now(dt.UTC),
            "origin": f"m:0:{i}",
        }
        kind = rng.choices(["my", "show", "comment", "create", "staff"], [40, 20, 10, 10, 20])[0]
        tg = rng.choice(residents)
        if kind == "my":
            return cm.ShowMyRequests(actor=actor(tg), **common)
        if kind in ("show", "comment") and tg in own:
            if kind == "show":
                return cm.ShowRequest(actor=actor(tg), request_id=own[tg], **common)
            return cm.AddComment(actor=actor(tg), request_id=own[tg], text=f"p{i}", **common)
        if kind == "staff":
            who = actor(rng.choice(staff))
            if new_pool:
                rid = new_pool.pop()
                return cm.TransitionRequest(actor=who, request_id=rid, action=Verb.ACCEPT, **common)
            return cm.ChangePriority(
                actor=who,
                request_id=rng.choice(open_pool),
                priority=rng.choice(list(Priority)),
                **common,
            )
        return cm.CreateRequest(
            actor=actor(tg),
            title=f"Profiled {i}",
            description="Water drips from the ceiling.",
            location=rng.choice(PLACES),
            priority=Priority.NORMAL,
            attachments=[],
            **common,
        )

    commands = [build(i) for i in range(count + 20)]
    for command in commands[:20]:  # imports, connections, caches: not profiled
        run_command(command, HANDLERS[type(command)])
    kinds: dict[str, int] = defaultdict(int)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    for command in commands[20:]:
        run_command(command, HANDLERS[type(command)])
        kinds[type(command).__name__] += 1
    profiler.disable()
    elapsed = time.perf_counter() - t0
    staff_unreachable(args.database_url, staff)
    out = io.StringIO()
    out.write(
        f"cProfile of run_command for {count} commands "
        f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}): {elapsed:.2f} s, "
        f"{1000 * elapsed / count:.1f} ms a command (profiler overhead incl.)\n"
    )
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    out.write("\n--- top 25 by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(25)
    out.write("\n--- top 25 by own time ---\n")
    stats.sort_stats("tottime").print_stats(25)
    return out.getvalue()


# --- Main -------------------------------------------------------------------------------------


def numbers(text: str, kind: type[float] | type[int]) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.interactive", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--workers", default="1,2,4", help="pool processes of the worker")
    parser.add_argument("--rates", default="10,50,100,200", help="offered updates/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="per offered rate")
    parser.add_argument("--users", type=int, default=1000, help="residents (>= 1,000)")
    parser.add_argument("--staff", type=int, default=100, help="staff members")
    parser.add_argument("--gap-s", type=float, default=1.5, help="between a user's updates")
    parser.add_argument("--timeout", type=float, default=10.0, help="for a reply, s")
    parser.add_argument("--noop-tasks", type=int, default=3000, help="the ceiling's burst")
    parser.add_argument("--profile", action="store_true", help="cProfile the command path")
    parser.add_argument("--profile-commands", type=int, default=400)
    parser.add_argument("--reuse", action="store_true", help="keep the copy a run left")
    parser.add_argument("--reseed", action="store_true", help="seed zavhoz_bench_reports again")
    parser.add_argument("--database-url", default=RUN_URL, help="the run's (copied) database")
    parser.add_argument("--base-url", default=BASE_URL, help="the 1M data set it copies")
    parser.add_argument("--redis-url", default=REDIS_URL, help="flushed at start and between")
    args = parser.parse_args(argv)
    args.worker_list = numbers(args.workers, int)
    args.rate_list = numbers(args.rates, float)
    if not args.worker_list or any(k < 1 for k in args.worker_list):
        parser.error("--workers: positive pool sizes, e.g. 1,2,4")
    if not args.rate_list or any(r <= 0 for r in args.rate_list) or args.seconds <= 0:
        parser.error("--rates and --seconds must be positive")
    if args.users < 1 or args.staff < 1:
        parser.error("--users and --staff must be positive")
    if "bench" not in database_name(args.database_url):
        parser.error(f"refusing to drop {database_name(args.database_url)!r}: not a bench database")
    if args.redis_url.rstrip("/").rsplit("/", 1)[-1] in ("0", "11", "12", "13"):
        parser.error("Redis databases 0, 11, 12 and 13 are other work's")
    return args


def worker_argv(pool: int) -> list[str]:
    """The Procfile's `worker` line (after `zavhoz`) with its --concurrency set to `pool`."""
    [(_, argv)] = procfile_commands(("worker",))
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--concurrency", "-c"):
            skip = True
            continue
        if not arg.startswith("--concurrency="):
            out.append(arg)
    if "--" not in out:
        out.append("--")
    return [*out, "--concurrency", str(pool)]


def _terminate(*_: object) -> None:
    print("SIGTERM: stopping everything this run started", file=sys.stderr, flush=True)
    raise SystemExit(130)


def warm_up(driver: Driver, pool: int) -> None:
    """Every pool process's first commands (imports, connections) are not measured."""
    warm = [u for u in driver.users if not u.staff][-4 * pool :]
    actions = []
    for user in warm:
        a = Action(user, "my", text="/my")
        driver.post(a)
        actions.append(a)
    deadline = time.monotonic() + 60
    got = 0
    while got < len(actions) and time.monotonic() < deadline:
        got += len(driver.match(0.2))
    with driver.lock:
        driver.pending.clear()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    from sandbox.server import SandboxConfig, SandboxThread

    python = os.path.relpath(sys.executable, ROOT)
    print(f"$ {shlex.join([python, '-m', 'bench.interactive', *sys.argv[1:]])}")
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, cpus: {os.cpu_count()}")
    run_dir = Path(tempfile.mkdtemp(prefix="zavhoz-interactive-"))
    sandbox_thread = SandboxThread(config=SandboxConfig(bot_rate_per_sec=FLOOD_LIMIT))
    sandbox_thread.start()
    settings = {
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "TELEGRAM_API_URL": sandbox_thread.url,
        "RATE_BOT_PER_SECOND": str(FLOOD_LIMIT),
        "VAR_DIR": str(run_dir / "var"),
    }
    os.environ.update(settings, LOG_LEVEL="WARNING", LOG_FORMAT="console")
    from core.logging import configure_logging
    from core.settings import get_settings

    get_settings.cache_clear()
    configure_logging("console", "WARNING")
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= settings | {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}  # "ready." is INFO
    children = Children(run_dir, env)
    results: list[Result] = []
    ceilings: dict[int, Ceiling] = {}
    profile = ""
    started = time.monotonic()
    try:
        args.keep = True
        print(f"data set: {prepare_database(args)}", flush=True)
        flush_redis(args.redis_url)
        users = max(args.users, 1)
        c = cast(args.database_url, users, args.staff)
        staff_unreachable(args.database_url)
        sandbox = Sandbox(sandbox_thread.url)
        sandbox.register(c.everyone, batch=5000)
        sent: queue.SimpleQueue[Sent] = queue.SimpleQueue()
        hook_sandbox(sandbox_thread.state, sent)
        driver = Driver(args, sandbox, sent, c)
        print(
            f"setup: sandbox {sandbox_thread.url} (global flood limit {FLOOD_LIMIT}/s), Redis "
            f"{args.redis_url}; {len(c.residents)} residents, {len(c.staff)} staff, "
            f"{len(c.new_pool)} new and {len(c.open_pool)} other open requests for staff, "
            f"{len(c.everyone):,} chats; logs in {run_dir}",
            flush=True,
        )
        for pool in args.worker_list:
            ceilings[pool] = measure_ceiling(args, pool, run_dir)
            ce = ceilings[pool]
            print(
                f"-- ceiling, pool of {pool}: no-op round trip p50 "
                f"{percentile(ce.rtt_ms, 0.5):.1f} ms, p99 {percentile(ce.rtt_ms, 0.99):.1f} "
                f"ms; {ce.tasks} tasks at {ce.rate:.0f}/s",
                flush=True,
            )
        bot = children.start("bot", ["bot"])
        bot.wait_for_log("bot.polling", timeout=120)
        for pool in args.worker_list:
            flush_redis(args.redis_url)
            print(f"-- {pool} worker processes: `zavhoz {shlex.join(worker_argv(pool))}`")
            worker: Proc = children.start(f"worker-{pool}", worker_argv(pool))
            try:
                worker.wait_for_log("ready.", timeout=180)
                for user in driver.users:  # Redis flushed: the dialogs are gone
                    user.stuck, user.steps, user.recent = False, [], []
                warm_up(driver, pool)
                for rate in args.rate_list:
                    children.check()
                    before = CpuSample.take(children, database_name(args.database_url))
                    r = run_rate(driver, pool, rate, args.seconds, args.gap_s, args.timeout)
                    after = CpuSample.take(children, database_name(args.database_url))
                    r.cpu_s = after.spent_since(before)
                    staff_unreachable(args.database_url, [u.chat for u in driver.users if u.staff])
                    results.append(r)
                    ms = r.latencies()
                    print(
                        f"   {pool} workers, {rate:g}/s: {len(r.actions)} sent, "
                        f"{len(r.replied)} replied, {r.achieved:.1f}/s, p50 "
                        f"{fmt_ms(percentile(ms, 0.5), r.timeout) if ms else '-'} ms, p99 "
                        f"{fmt_ms(percentile(ms, 0.99), r.timeout) if ms else '-'} ms, "
                        f"errors {r.errors}",
                        flush=True,
                    )
                    time.sleep(2.0)  # per-chat windows and tokens refill
            finally:
                children.stop([worker])
        if args.profile:
            flush_redis(args.redis_url)
            print(f"-- profile: {args.profile_commands} commands through run_command", flush=True)
            try:
                profile = profile_commands(args, c, args.profile_commands)
            except Exception as exc:  # the load's results are printed all the same
                profile = f"profile failed: {type(exc).__name__}: {exc}"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop(list(children.procs))
        sandbox_thread.stop()
        with contextlib.suppress(Exception):
            flush_redis(args.redis_url)
    print()
    print(table(results, ceilings))
    print()
    for pool, ce in sorted(ceilings.items()):
        print(
            f"ceiling, {pool} pool processes: bare Celery no-op round trip p50 "
            f"{percentile(ce.rtt_ms, 0.5):.1f} ms, p99 {percentile(ce.rtt_ms, 0.99):.1f} ms (one "
            f"at a time); {ce.rate:.0f} tasks/s ({ce.tasks} published at once)"
        )
    print()
    print(cpu_table(results, ceilings))
    print()
    for r in results:
        print(f"{r.workers} workers, {r.rate:g}/s: {by_kind(r)}")
        note = error_note(r)
        if note:
            print(f"{r.workers} workers, {r.rate:g}/s: {note}")
    print()
    for line in verdicts(results, ceilings):
        print(line)
    if profile:
        print()
        print(profile)
    print()
    print(
        f"{args.seconds:g} s per rate, residents' sessions "
        f"{', '.join(f'{k} {100 * w:g} %' for k, w in SESSIONS)}, staff's when picked; "
        "latencies from the update posted to the sandbox to its first send* to that chat "
        "accepted; wall time "
        f"{time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
