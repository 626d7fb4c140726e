"""Queues isolated under load: interactive latency while a month's report on 1,000,000 requests
and a 10,000-chat broadcast run, with one shared worker pool and with a pool per queue.

    .venv/bin/python -m bench.isolation [--chats 10000] [--rate 5] [--baseline-s 20]
                                        [--load-s 40] [--layouts shared,isolated] [--reuse]
                                        [--reseed] [--keep]

About 4-5 minutes with the data set in place (seeding it first: 2-6 minutes more).

Services: PostgreSQL on 127.0.0.1:5432 and Redis database 11 (flushed at the start, between
layouts and at the end; the broker, the limiter and the bot's dialogs). The database is
zavhoz_bench_isolation, a copy (CREATE DATABASE ... TEMPLATE) of the reports benchmark's
zavhoz_bench_reports (bench/report_seed.py: 1,000,000 requests, 100,000 users; seeded here
when missing), migrated to head; --reuse keeps the copy a previous run left (--keep) instead of
copying again. The broadcast's audience is exactly --chats residents: just before each
broadcast is confirmed, the bench marks every other resident unreachable.

Processes (each its own process group, killed on exit and on Ctrl-C; logs in a temporary
directory): the sandbox Bot API in this process (flood limit 30 sends per sliding second, it
answers 429 above it, as in bench/broadcast.py), the real bot (`zavhoz bot`, long polling), and
for each layout the Procfile's worker lines, run as written there (`zavhoz` is
`.venv/bin/python -m zavhoz`): shared = `worker` (one pool, every queue); isolated =
`worker_interactive`, `worker_notifications`, `worker_batch`. No beat.

Per layout: the workers start; 8 users /start to warm every pool child; the admin's broadcast
is drafted (StartBroadcast through the broker). Then two phases of interactive load, open loop
at --rate actions a second through the sandbox (so through the bot): alternately a new user's
/start and an existing resident's /my (a seeded resident with requests, outside the audience).
1. baseline: --baseline-s seconds of that alone.
2. under load: at its first instant the admin's ConfirmBroadcast (the fan-out runs in a worker,
   as when the admin presses Confirm) and ShowReport month (`/report month`: the command, then
   `reports.on_demand` on the reports queue) are published, and the same load runs for --load-s
   seconds. Then the report is awaited (bounded), the workers stopped, the broadcast's unsent
   rows cancelled and Redis flushed, so the next layout inherits no backlog.

Columns (one line per layout and phase; the machine is noisy, compare lines of one run):
- sent / replied: interactive actions, and those whose reply came by --grace-s after the phase
  (the workers are stopped then: what is still queued never replies).
- p50 .. max: latency of each action, from the moment just before the driver posted the user's
  message to the sandbox to the sandbox accepting the first sendMessage to that chat (both on
  this process's clock: the sandbox runs in it; nothing else is sent to these chats). An action
  without a reply counts as infinitely slow: ">N" means no reply after at least N s.
- x base p50/p95: the phase's p50 and p95 divided by the same layout's baseline's.
- queue p50/p95, send p50/p95/max: each reply split at its outbox row's created_at
  (PostgreSQL's now(): the start of the command's transaction in the worker). "queue" is the
  bot, the broker and the wait for a free worker; "send" is the command's work, the wait for
  the shared rate limiter (or a 429's pause of every worker) and the HTTP call.
- bot/s, bcast/s: every accepted send, and the broadcast's messages, per second of the phase.
- 429s: sends the sandbox refused in the phase. CPU %: the machine's busy time over the phase
  (100 = every core).
- report: the month's report's last message (the CSV) accepted, after it was asked for (or
  "not done" by the end of the grace and --report-wait-s).
Under the table, per phase: CPU seconds of the workers, PostgreSQL's backends of this database,
the bot, this process and the rest (Redis, other work on the machine); replies whose send part
took over 0.5 s and how many came within 1.5 s after a 429 (every worker pauses retry_after,
1 s, on one); the broadcast's rate from its first message while the report ran and after.

Exits non-zero only when the setup fails, never on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import shlex
import signal
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.broadcast import Sandbox, flush_redis
from bench.embedded import CLK, _stat
from bench.maintenance import copy_database, exists
from bench.reports import DEFAULT_URL as BASE_URL
from bench.reports import conninfo, database_name, prepare, read_marker, render_table, write_marker
from bench.scheduler_soak import NOT_INHERITED, Proc, _ppids, admin_execute, percentile, tree

RUN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_isolation"
REDIS_URL = "redis://127.0.0.1:6379/11"  # 0, 12 and 13 belong to other work: never touch them
ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
LAYOUTS = {"shared": ("worker",), "isolated": ("worker_interactive", "worker_notifications",
                                                "worker_batch")}  # fmt: skip
LIMIT = 30  # Telegram's (and the sandbox's) sends per second, and RATE_BOT_PER_SECOND
ADMIN = 10_000_001  # the seed's first admin (user id 1)
NEW_USER = 800_000_000  # Telegram ids of the users who /start, none in the data set
TEXT = "Water will be off on Tuesday 10:00-12:00."
WARM_USERS = 8
PROGRESS_S = 5.0
SLOW_SEND_S = 0.5  # a reply's send part longer than this waited for something (limiter, 429)
PAUSE_S = 1.5  # a 429 pauses every worker retry_after (1 s here) plus a send


# --- Processes -------------------------------------------------------------------------------


def procfile_commands(names: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """The Procfile's lines by name, as argv after `zavhoz` (the bench runs what ops run)."""
    lines = {}
    for raw in PROCFILE.read_text().splitlines():
        name, sep, command = raw.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            lines[name.strip()] = shlex.split(command)
    out = []
    for name in names:
        argv = lines.get(name)
        if not argv or argv[0] != "zavhoz":
            raise SystemExit(f"Procfile has no `{name}: zavhoz ...` line")
        out.append((name, argv[1:]))
    return out


class Children:
    """Every process this run started, stopped on exit whatever happens."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(name, argv, self.env, self.log_dir)
        self.procs.append(proc)
        return proc

    def stop(self, procs: list[Proc]) -> None:
        for proc in procs:
            proc.terminate()  # all at once: each worker's warm shutdown takes its time
        for proc in procs:
            proc.stop()  # then SIGKILL to the group: a pool child may outlive its parent
            self.procs.remove(proc)

    def check(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is not None:
                tail = proc.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{tail}")


def machine_busy_s() -> float:
    """CPU seconds every core spent busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLK


def postgres_s(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to `database` (other work shares the
    server); a backend gone by the next sample is left out rather than counted negative."""
    out = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and f" {database} " in (entry / "cmdline").read_text():
                raw = (entry / "stat").read_text()
                if raw[raw.index("(") + 1 : raw.rindex(")")].startswith("postgres"):
                    fields = raw.rsplit(")", 1)[1].split()
                    out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK
    return out


def cpu_s(children: Children) -> dict[str, float]:
    """CPU seconds used so far: the machine, this process (the sandbox and the load), the bot
    and the workers (each tree: live processes, and the reaped children in the root's count)."""
    ppids = _ppids()
    out = {"machine": machine_busy_s(), "this": sum(os.times()[:2]), "bot": 0.0, "workers": 0.0}
    for proc in children.procs:
        total = 0.0
        for pid in tree(proc.popen.pid, ppids):
            stat = _stat(pid)
            if stat is not None:
                total += (int(stat[11]) + int(stat[12])) / CLK
                if pid == proc.popen.pid:
                    total += (int(stat[13]) + int(stat[14])) / CLK  # reaped children
        out["bot" if proc.name == "bot" else "workers"] += total
    return out


# --- The database ----------------------------------------------------------------------------


def prepare_database(args: argparse.Namespace) -> str:
    """The run's copy of the 1M data set; returns a line saying what it holds."""
    from db import migrate

    url = args.database_url
    if args.reuse and exists(url) and (marker := read_marker(url)) is not None:
        migrate.upgrade(url)
        return f"{database_name(url)}: reused ({marker['counts']}, anchor {marker['anchor']})"
    seeding = argparse.Namespace(requests=1_000_000, seed=20_261_201, reseed=args.reseed)
    marker = prepare(args.base_url, seeding)  # seeds zavhoz_bench_reports unless it holds it
    admin_execute(url, f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
    t0 = time.monotonic()
    if not copy_database(args.base_url, url, tries=10):
        raise SystemExit(f"{database_name(args.base_url)} is busy (someone is connected)")
    migrate.upgrade(url)
    write_marker(url, marker)  # CREATE DATABASE ... TEMPLATE does not copy the comment: --reuse
    return (
        f"{database_name(url)}: a copy of {database_name(args.base_url)} ({marker['counts']}, "
        f"anchor {marker['anchor']}) in {time.monotonic() - t0:.1f} s"
    )


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def set_audience(url: str, chats: int) -> list[int]:
    """Exactly `chats` reachable residents (the first by id): the broadcast's audience. Users
    whose commands made them reachable since (the /my residents) are excluded again."""
    query(
        url,
        "UPDATE users SET reachable = (id IN (SELECT id FROM users WHERE role = 'resident'"
        " AND telegram_id IS NOT NULL ORDER BY id LIMIT %s)) WHERE role = 'resident'",
        (chats,),
    )
    rows = query(
        url,
        "SELECT telegram_id FROM users WHERE role = 'resident' AND reachable"
        " AND telegram_id IS NOT NULL",
    )
    return [int(r[0]) for r in rows]


def my_residents(url: str, count: int) -> list[int]:
    """Residents with requests, outside the audience (the last by id): the /my users."""
    rows = query(
        url,
        "SELECT u.telegram_id FROM users u WHERE u.role = 'resident' AND u.telegram_id IS NOT"
        " NULL AND EXISTS (SELECT 1 FROM requests r WHERE r.author_id = u.id)"
        " ORDER BY u.id DESC LIMIT %s",
        (count,),
    )
    return [int(r[0]) for r in rows]


def reply_rows(url: str, chats: list[int]) -> dict[int, tuple[float, float | None]]:
    """chat -> (created_at, sent_at) of the first outbox row to it, as Unix times."""
    rows = query(
        url,
        "SELECT DISTINCT ON (chat_id) chat_id, extract(epoch FROM created_at),"
        " extract(epoch FROM sent_at) FROM outbox WHERE chat_id = ANY(%s) AND batch_id IS NULL"
        " ORDER BY chat_id, id",
        (chats,),
    )
    return {int(c): (float(a), None if b is None else float(b)) for c, a, b in rows}


def clean_up(url: str, broadcast_id: int | None) -> str:
    """After a layout: nothing left for the next one to send (the broadcast's rest, a report's
    rows or replies not sent yet)."""
    if broadcast_id is not None:
        query(url, "UPDATE broadcasts SET state = 'cancelled' WHERE id = %s", (broadcast_id,))
    counts = query(
        url,
        "WITH c AS (UPDATE outbox SET state = 'cancelled' WHERE state IN ('pending', 'sending')"
        " RETURNING batch_id IS NOT NULL AS bcast) SELECT bcast, count(*) FROM c GROUP BY bcast",
    )
    left = {bool(b): int(n) for b, n in counts}
    return f"cancelled {left.get(True, 0):,} broadcast rows and {left.get(False, 0)} others"


# --- Load ------------------------------------------------------------------------------------


@dataclass
class Action:
    kind: str  # "start" or "my"
    chat: int
    t: float  # Unix time just before the post to the sandbox


@dataclass
class Load:
    """Open loop: an action every 1/rate s whatever the replies do, posted from a small pool so
    a slow post does not push the schedule."""

    sandbox: Sandbox
    rate: float
    new_ids: list[int]
    my_ids: list[int]
    actions: list[Action] = field(default_factory=list)
    errors: int = 0

    def _post(self, kind: str, chat: int) -> None:
        t = time.time()
        body = {"user_id": chat, "text": f"/{kind}", "first_name": f"u{chat}"}
        try:
            self.sandbox.call("POST", "/sandbox/messages", body)
            self.actions.append(Action(kind, chat, t))
        except OSError:
            self.errors += 1

    def run(self, seconds: float, tick: Any = None) -> None:
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="load") as pool:
            n = 0
            while (due := start + n / self.rate) - start < seconds:
                time.sleep(max(0.0, due - time.monotonic()))
                kind = "start" if n % 2 == 0 or not self.my_ids else "my"
                chat = self.new_ids.pop() if kind == "start" else self.my_ids.pop()
                pool.submit(self._post, kind, chat)
                n += 1
                if tick is not None:
                    tick()


def first_replies(sends: list[dict[str, Any]], actions: list[Action]) -> dict[int, float]:
    """chat -> when the sandbox accepted the first sendMessage to it after the action."""
    since = {a.chat: a.t for a in actions}
    got: dict[int, float] = {}
    for s in sends:
        chat = s["chat_id"]
        fresh = chat in since and chat not in got and s["t"] >= since[chat]
        if fresh and s["accepted"] and s["method"] == "sendMessage":
            got[chat] = s["t"]
    return got


def wait_replies(sandbox: Sandbox, actions: list[Action], timeout: float) -> dict[int, float]:
    deadline = time.monotonic() + timeout
    while True:
        got = first_replies(sandbox.sends(), actions)
        if len(got) >= len(actions) or time.monotonic() >= deadline:
            return got
        time.sleep(0.5)


# --- Measuring -------------------------------------------------------------------------------


@dataclass
class Phase:
    layout: str
    name: str
    start: float = 0.0  # Unix time
    end: float = 0.0
    actions: list[Action] = field(default_factory=list)
    latency: dict[int, float] = field(default_factory=dict)  # chat -> s
    waited: float = 0.0  # the shortest time an action without a reply was waited on
    queue: list[float] = field(default_factory=list)
    send: list[float] = field(default_factory=list)
    accepted: int = 0
    broadcast: int = 0
    rejected: int = 0
    asked: float | None = None  # when the broadcast and the report were asked for
    report_s: float | None = None
    report_note: str = ""
    notes: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used in the phase
    autoanalyzed: float | None = None  # autovacuum's last analyze of outbox, s after the ask

    def values(self) -> list[float]:
        """Every action's latency; one without a reply counts as infinitely slow, so the
        percentiles are not flattered by the replies that never came."""
        missing = len(self.actions) - len(self.latency)
        return sorted([*self.latency.values(), *[math.inf] * missing])


def rate(sends: list[dict[str, Any]], chats: set[int], start: float, end: float) -> float:
    n = sum(1 for s in sends if s["accepted"] and s["chat_id"] in chats and start <= s["t"] < end)
    return n / (end - start) if end > start else 0.0


def measure(phase: Phase, sends: list[dict[str, Any]], audience: set[int], url: str) -> None:
    replies = first_replies(sends, phase.actions)
    phase.latency = {a.chat: replies[a.chat] - a.t for a in phase.actions if a.chat in replies}
    now = time.time()
    phase.waited = min((now - a.t for a in phase.actions if a.chat not in replies), default=0)
    window = [s for s in sends if phase.start <= s["t"] <= phase.end]
    phase.accepted = sum(1 for s in window if s["accepted"])
    phase.rejected = sum(1 for s in window if not s["accepted"])
    phase.broadcast = sum(1 for s in window if s["accepted"] and s["chat_id"] in audience)
    rows = reply_rows(url, [a.chat for a in phase.actions])
    for a in phase.actions:
        if a.chat in replies and a.chat in rows:
            created = rows[a.chat][0]
            phase.queue.append(created - a.t)
            phase.send.append(replies[a.chat] - created)
    phase.queue.sort()
    phase.send.sort()
    refused = [s["t"] for s in sends if not s["accepted"]]
    slow = [
        replies[a.chat]
        for a in phase.actions
        if a.chat in replies and a.chat in rows and replies[a.chat] - rows[a.chat][0] > SLOW_SEND_S
    ]
    after_429 = sum(1 for t in slow if any(0 <= t - r <= PAUSE_S for r in refused))
    c = phase.cpu
    rest = c["machine"] - c["this"] - c["bot"] - c["workers"] - c["postgres"]
    phase.notes.append(
        f"CPU s in {phase.end - phase.start:.0f} s (x{os.cpu_count()} cores): workers "
        f"{c['workers']:.1f}, PostgreSQL (this database) {c['postgres']:.1f}, bot "
        f"{c['bot']:.1f}, this process (sandbox, load) {c['this']:.1f}, the rest (Redis, other "
        f"work) {rest:.1f}; replies whose "
        "send part took over "
        f"{SLOW_SEND_S:g} s: {len(slow)}, {after_429} of them within {PAUSE_S:g} s after a 429"
    )
    if phase.asked is not None:
        first = min(
            (s["t"] for s in window if s["accepted"] and s["chat_id"] in audience), default=None
        )
        line = "broadcast: first message " + (
            "never" if first is None else f"{first - phase.asked:.1f} s after the confirm"
        )
        if first is not None and phase.report_s is not None:
            done = phase.asked + phase.report_s
            if done <= first:
                line += "; the report was done before it"
            elif done < phase.end:
                line += (
                    f"; {rate(sends, audience, first, done):.1f}/s from it while the report ran,"
                    f" {rate(sends, audience, done, phase.end):.1f}/s after the report"
                )
        if first is not None:
            line += f"; {rate(sends, audience, first, phase.end):.1f}/s from it to the phase's end"
        line += "; autovacuum analyzed outbox " + (
            "not in the phase"
            if phase.autoanalyzed is None
            else f"{phase.autoanalyzed:.0f} s after the confirm"
        )
        phase.notes.append(line)


def fmt(value: float | None, waited: float = 0.0) -> str:
    if value is None:
        return "-"
    return f">{waited:.0f}" if math.isinf(value) else f"{value:.3f}"


def pct(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return "no reply" if math.isinf(a) else f"{a / b:.1f}"


def table(phases: list[Phase]) -> str:
    head = ["layout", "phase", "sent", "replied", "p50 s", "p95 s", "p99 s", "max s",
            "x base p50/p95", "queue p50/p95", "send p50/p95/max", "bot/s", "bcast/s", "429s",
            "CPU %", "report"]  # fmt: skip
    rows = []
    base: dict[str, Phase] = {p.layout: p for p in phases if p.name == "baseline"}
    for p in phases:
        v, w = p.values(), p.waited
        b = base.get(p.layout)
        bv = b.values() if b else []
        span = max(p.end - p.start, 1e-9)
        x = "1.0 / 1.0" if p is b else (
            f"{ratio(pct(v, 0.5), pct(bv, 0.5))} / {ratio(pct(v, 0.95), pct(bv, 0.95))}"
        )  # fmt: skip
        report = "-" if p.name == "baseline" else (
            f"{p.report_s:.1f} s" if p.report_s is not None else f"not done {p.report_note}"
        )  # fmt: skip
        q, d = p.queue, p.send
        rows.append([
            p.layout, p.name, str(len(p.actions)), str(len(p.latency)), fmt(pct(v, 0.5), w),
            fmt(pct(v, 0.95), w), fmt(pct(v, 0.99), w), fmt(max(v, default=None), w), x,
            f"{fmt(pct(q, 0.5))} / {fmt(pct(q, 0.95))}",
            f"{fmt(pct(d, 0.5))} / {fmt(pct(d, 0.95))} / {fmt(max(d, default=None))}",
            f"{p.accepted / span:.1f}", f"{p.broadcast / span:.1f}", str(p.rejected),
            f"{100 * p.cpu.get('machine', 0) / span / (os.cpu_count() or 1):.0f}", report,
        ])  # fmt: skip
    return render_table(head, rows)


# --- A layout --------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, children: Children, sandbox: Sandbox) -> None:
        from bot.enqueue import CommandQueue

        self.args, self.children, self.sandbox = args, children, sandbox
        self.url: str = args.database_url
        self.publisher = CommandQueue(args.redis_url)
        self.run_id = uuid.uuid4().hex[:8]
        self.serial = 0
        self.next_new = NEW_USER
        self.audience: set[int] = set()
        self.my_pool: list[int] = []

    def publish(self, command: Any) -> None:
        self.publisher.publish(command)

    def admin_command(self, kind: str, **fields: Any) -> Any:
        from core import commands as c

        self.serial += 1
        actor = c.Actor(user_id=ADMIN, chat_id=ADMIN, language="en", first_name="Admin")
        cls = {"start": c.StartBroadcast, "confirm": c.ConfirmBroadcast, "report": c.ShowReport}
        key = f"isolation:{self.run_id}:{kind}:{self.serial}"
        return cls[kind](
            idempotency_key=key, actor=actor, issued_at=dt.datetime.now(dt.UTC), **fields
        )

    def new_ids(self, n: int) -> list[int]:
        ids = list(range(self.next_new, self.next_new + n))
        self.next_new += n
        return ids[::-1]  # popped from the end: in order

    def draft_broadcast(self) -> int:
        before = query(self.url, "SELECT coalesce(max(id), 0) FROM broadcasts")[0][0]
        self.publish(self.admin_command("start", audience="residents", text=TEXT))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = query(self.url, "SELECT max(id) FROM broadcasts WHERE id > %s", (before,))
            if rows and rows[0][0] is not None:
                return int(rows[0][0])
            self.children.check()
            time.sleep(0.3)
        raise RuntimeError("the broadcast's draft did not appear in 60 s")

    def phase(self, layout: str, name: str, seconds: float, on_start: Any = None) -> Phase:
        rate = self.args.rate
        count = int(seconds * rate) + 2
        load = Load(self.sandbox, rate, self.new_ids(count), self.my_pool[-count:])
        del self.my_pool[-count:]
        phase = Phase(layout, name)
        last = [time.monotonic()]
        broadcast_id = on_start() if on_start is not None else None

        def tick() -> None:
            if time.monotonic() - last[0] >= PROGRESS_S:
                last[0] = time.monotonic()
                self.progress(phase, load, broadcast_id)
                self.children.check()

        database = database_name(self.url)
        before, pg_before = cpu_s(self.children), postgres_s(database)
        phase.start = time.time()
        load.run(seconds, tick)
        phase.end = time.time()
        after, pg_after = cpu_s(self.children), postgres_s(database)
        phase.cpu = {k: after[k] - before[k] for k in after}
        phase.cpu["postgres"] = sum(t - pg_before.get(pid, 0.0) for pid, t in pg_after.items())
        phase.actions = sorted(load.actions, key=lambda a: a.t)
        if load.errors:
            print(f"   {load.errors} posts to the sandbox failed", flush=True)
        wait_replies(self.sandbox, phase.actions, self.args.grace_s)
        return phase

    def progress(self, phase: Phase, load: Load, broadcast_id: int | None) -> None:
        sends = self.sandbox.sends()
        got = first_replies(sends, load.actions)
        values = sorted(got[a.chat] - a.t for a in load.actions if a.chat in got)
        line = (
            f"   [{phase.layout} {phase.name} +{time.time() - phase.start:4.0f} s] sent "
            f"{len(load.actions)}, replied {len(values)}"
        )
        if values:
            line += f" (p50 {percentile(values, 0.5):.2f} s, max {values[-1]:.2f} s)"
        recent = [s for s in sends if s["t"] >= time.time() - PROGRESS_S]
        line += (
            f"; last {PROGRESS_S:g} s: {sum(s['accepted'] for s in recent) / PROGRESS_S:.1f} "
            f"sends/s, {sum(not s['accepted'] for s in recent)} 429s"
        )
        if broadcast_id is not None:
            line += f"; broadcast #{broadcast_id} {self.broadcast_counts(broadcast_id)}"
        print(line, flush=True)

    def broadcast_counts(self, broadcast_id: int) -> str:
        rows = query(
            self.url,
            "SELECT state, count(*) FROM outbox WHERE batch_id = %s GROUP BY state ORDER BY 1",
            (broadcast_id,),
        )
        return ", ".join(f"{s} {n:,}" for s, n in rows) or "not fanned out yet"

    def report_done(self, since: float) -> float | None:
        """When the month's CSV (the report's last message) reached the admin."""
        for s in self.sandbox.sends():
            csv = s["chat_id"] == ADMIN and s["method"] == "sendDocument"
            if csv and s["accepted"] and s["t"] >= since:
                return float(s["t"]) - since
        return None

    def layout(self, layout: str) -> list[Phase]:
        args = self.args
        print(
            f"-- {layout}: starting {', '.join(LAYOUTS[layout])} as the Procfile says", flush=True
        )
        workers = [self.children.start(n, argv) for n, argv in procfile_commands(LAYOUTS[layout])]
        broadcast_id: int | None = None
        phases: list[Phase] = []
        try:
            t0 = time.monotonic()
            for proc in workers:
                proc.wait_for_log("ready.", timeout=180)
            # Every pool child's first command (imports, connections) is not measured.
            warm = self.new_ids(WARM_USERS)
            actions = []
            for chat in warm:
                actions.append(Action("start", chat, time.time()))
                self.sandbox.call("POST", "/sandbox/messages", {"user_id": chat, "text": "/start"})
            got = wait_replies(self.sandbox, actions, 60)
            broadcast_id = self.draft_broadcast()
            self.audience = set(set_audience(self.url, args.chats))
            print(
                f"   workers up and warm in {time.monotonic() - t0:.0f} s ({len(got)}/"
                f"{WARM_USERS} warm-up replies); broadcast #{broadcast_id} drafted to "
                f"{len(self.audience):,} residents",
                flush=True,
            )
            time.sleep(1.5)  # the warm-up's sends leave the limiter's and sandbox's windows
            phases.append(self.phase(layout, "baseline", args.baseline_s))
            print(f"   baseline: {self.summary(phases[-1])}", flush=True)

            asked: list[float] = []

            def start_load() -> int:
                assert broadcast_id is not None
                # The baseline's users are reachable residents now: out of the audience again.
                self.audience = set(set_audience(self.url, args.chats))
                asked.append(time.time())
                self.publish(self.admin_command("confirm", broadcast_id=broadcast_id))
                self.publish(self.admin_command("report", period="month"))
                return broadcast_id

            under = self.phase(layout, "under load", args.load_s, start_load)
            under.asked = asked[0]
            phases.append(under)
            under.report_s = self.report_done(asked[0])
            deadline = time.monotonic() + args.report_wait_s
            while under.report_s is None and time.monotonic() < deadline:
                time.sleep(1)
                self.children.check()
                under.report_s = self.report_done(asked[0])
            if under.report_s is None:
                under.report_note = f"after {time.time() - asked[0]:.0f} s"
            # Whether the planner's statistics counted the 10,000 new outbox rows during the
            # phase (the drains' claim is planned from them).
            analyzed = query(
                self.url,
                "SELECT extract(epoch FROM last_autoanalyze) FROM pg_stat_user_tables"
                " WHERE relname = 'outbox'",
            )
            if analyzed and analyzed[0][0] is not None and float(analyzed[0][0]) > asked[0]:
                under.autoanalyzed = float(analyzed[0][0]) - asked[0]
            print(
                f"   under load: {self.summary(under)}; broadcast "
                f"{self.broadcast_counts(broadcast_id)}",
                flush=True,
            )
        finally:
            self.children.stop(workers)
        sends = self.sandbox.sends()
        for phase in phases:
            measure(phase, sends, self.audience, self.url)
        if broadcast_id is not None:
            print(f"   stopped; {clean_up(self.url, broadcast_id)}", flush=True)
        flush_redis(args.redis_url)  # queues, limiter windows, a 429 pause: none carried over
        time.sleep(1.5)
        return phases

    def summary(self, phase: Phase) -> str:
        got = first_replies(self.sandbox.sends(), phase.actions)
        values = sorted(got[a.chat] - a.t for a in phase.actions if a.chat in got)
        if not values:
            return f"{len(phase.actions)} sent, none replied"
        return (
            f"{len(phase.actions)} sent, {len(values)} replied, p50 {percentile(values, 0.5):.3f}"
            f" s, p95 {percentile(values, 0.95):.3f} s, max {values[-1]:.3f} s"
        )


# --- Main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--chats", type=int, default=10_000, help="the broadcast's audience")
    parser.add_argument("--rate", type=float, default=5.0, help="interactive actions a second")
    parser.add_argument("--baseline-s", type=float, default=20.0)
    parser.add_argument("--load-s", type=float, default=40.0)
    parser.add_argument("--grace-s", type=float, default=30.0, help="for replies after a phase")
    parser.add_argument("--report-wait-s", type=float, default=60.0, help="after the phase")
    parser.add_argument("--layouts", default="shared,isolated", help="of shared,isolated")
    parser.add_argument("--reuse", action="store_true", help="keep the copy a --keep run left")
    parser.add_argument("--reseed", action="store_true", help="seed zavhoz_bench_reports again")
    parser.add_argument("--keep", action="store_true", help="keep the run's database")
    parser.add_argument("--database-url", default=RUN_URL, help="the run's (dropped) database")
    parser.add_argument("--base-url", default=BASE_URL, help="the 1M data set it copies")
    parser.add_argument("--redis-url", default=REDIS_URL, help="flushed at start and between")
    args = parser.parse_args(argv)
    args.layout_list = [x.strip() for x in args.layouts.split(",") if x.strip()]
    if any(x not in LAYOUTS for x in args.layout_list) or not args.layout_list:
        parser.error(f"--layouts: of {','.join(LAYOUTS)}")
    if args.chats < 1 or args.rate <= 0 or args.baseline_s <= 0 or args.load_s <= 0:
        parser.error("--chats, --rate, --baseline-s and --load-s must be positive")
    if "bench" not in database_name(args.database_url):
        parser.error(f"refusing to drop {database_name(args.database_url)!r}: not a bench database")
    if args.redis_url.rstrip("/").rsplit("/", 1)[-1] in ("0", "12", "13"):
        parser.error("Redis databases 0, 12 and 13 are other work's")
    return args


def _terminate(*_: object) -> None:
    print("SIGTERM: stopping everything this run started", file=sys.stderr, flush=True)
    raise SystemExit(130)  # runs the cleanup below like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    from sandbox.server import SandboxConfig, SandboxThread

    python = os.path.relpath(sys.executable, ROOT)
    print(f"$ {shlex.join([python, '-m', 'bench.isolation', *sys.argv[1:]])}")
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, cpus: {os.cpu_count()}")
    run_dir = Path(tempfile.mkdtemp(prefix="zavhoz-isolation-"))
    sandbox_thread = SandboxThread(config=SandboxConfig(bot_rate_per_sec=LIMIT))
    sandbox_thread.start()
    settings = {
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "TELEGRAM_API_URL": sandbox_thread.url,
        "RATE_BOT_PER_SECOND": str(LIMIT),
        "VAR_DIR": str(run_dir / "var"),
    }
    # The driver's own settings (it publishes commands and reads the database).
    os.environ.update(settings, LOG_LEVEL="WARNING", LOG_FORMAT="console")
    from core.logging import configure_logging
    from core.settings import get_settings

    get_settings.cache_clear()
    configure_logging("console", "WARNING")
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= settings | {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}  # "ready." is INFO
    children = Children(run_dir, env)
    phases: list[Phase] = []
    started = time.monotonic()
    try:
        print(f"data set: {prepare_database(args)}", flush=True)
        flush_redis(args.redis_url)
        sandbox = Sandbox(sandbox_thread.url)
        audience = set_audience(args.database_url, args.chats)
        sandbox.register([ADMIN, *audience])  # every recipient has a chat, as on Telegram
        bot = children.start("bot", ["bot"])
        bot.wait_for_log("bot.polling", timeout=120)
        run = Run(args, children, sandbox)
        count = int((args.baseline_s + args.load_s) * args.rate * len(args.layout_list)) + 10
        run.my_pool = my_residents(args.database_url, count)
        print(
            f"setup: sandbox {sandbox_thread.url} (flood limit {LIMIT}/s), Redis "
            f"{args.redis_url}, bot up; {len(audience):,} residents in the audience; logs in "
            f"{run_dir}",
            flush=True,
        )
        for layout in args.layout_list:
            phases += run.layout(layout)
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short and leave processes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop(list(children.procs))
        sandbox_thread.stop()
        with contextlib.suppress(Exception):
            flush_redis(args.redis_url)
        if not args.keep:
            with contextlib.suppress(Exception):
                name = database_name(args.database_url)
                admin_execute(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print()
    print(table(phases))
    print()
    for phase in phases:
        for note in phase.notes:
            print(f"{phase.layout}, {phase.name}: {note}")
    print()
    print(
        f"rate {args.rate:g} actions/s (alternately a new user's /start and a resident's /my), "
        f"baseline {args.baseline_s:g} s, under load {args.load_s:g} s (broadcast to "
        f"{args.chats:,} chats and the month's report on 1,000,000 requests asked for at its "
        f"start); latencies in s from the user's message to the reply reaching the sandbox; "
        f"queue/send split at the reply's outbox row; wall time {time.monotonic() - started:.0f}"
        " s"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C: everything started is stopped by then
        print("interrupted", file=sys.stderr)
        sys.exit(130)
