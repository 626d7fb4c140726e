"""A day compressed: beat and workers with every scheduled job on a short interval, for many
ticks, against the maintenance data set, with desk traffic trickling in; per job, whether
every tick ran and how long the runs took, and whether the processes' memory stayed flat.

    .venv/bin/python -m bench.scheduler_soak [--ticks 144] [--interval 10] [--workers 2]
                                             [--concurrency 2] [--queues Q,Q/Q,...]
                                             [--rate 2] [--create-every 60] [--warm-ticks 3]
                                             [--small] [--no-plant] [--keep]

About ticks x interval plus two to three minutes (144 x 10 s: ~27 minutes).

Processes (each its own process group, logs under a temporary directory): `zavhoz sandbox`
on a free port, --workers `zavhoz worker -- -c CONCURRENCY` (prefork; every queue, or the
--queues of each in turn) and one `zavhoz beat` (redbeat), with every job of
workers.app.SCHEDULED_JOBS on SCHEDULE_<JOB> = --interval seconds; Redis database 9 (flushed)
is broker, limiter, beat lock and dialog storage.

The database is a copy (CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY) of
zavhoz_bench_maintenance_base, the data set of bench/maintenance.py (1,000,000 requests,
100,000 users, 2,000,000 comments; `python -m bench.maintenance` makes it), with its planted
set (inconsistencies, orphans, overdue, stalled broadcasts, retention rows; --no-plant leaves
it out), dropped at the end (--keep keeps it). --small: a fresh migrated database with a few
hundred users instead, for trying the script out; its figures say nothing about the target.
Every user has a chat in the sandbox, as on Telegram.

Desk traffic, open loop, through the bot's path (a command task by name on the broker, as
bot/enqueue.py publishes it): residents' /my and staff's /queue at --rate per second, a staff
member accepting each request the trickle created, and a resident creating one every
--create-every seconds (rarely: each new request notifies every staff member, 300 in the data
set, the bot's 30 msg/s are shared, and a staff member's replies wait behind the notices to
their chat). Latency: publishing the command to its reply reaching the sandbox.

Per job: ticks (expected beat sends), sends ("Sending due task" in beat's log), runs (the
workers' finished executions: Celery's "succeeded"/"raised" lines), failures, skipped (the job
lock's `job.skipped`: the previous run was still going), expired (the message waited longer
than its expiry, the interval, and was discarded), duration min/median/max of the runs that did
the work ("succeeded in"), runs longer than the interval, and `job_runs`' own count of runs
that did the work. runs must equal ticks. RSS (VmRSS) of every process, prefork children
included, and of each worker's tree: when beat starts, after --warm-ticks ticks (imports and
first-use caches are done: growth is measured from here, target under 10 %), half-way (the
growth over the second half tells a plateau, near zero, from a leak, about half the whole), at
the end, and the peak. Statements of the run's database seen running over 5 s are listed with
what they waited for. Exits non-zero only when the setup fails.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.broadcast import flush_redis
from bench.reports import conninfo, database_name, read_marker, render_table

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_soak"
BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_maintenance_base"
REDIS_URL = "redis://127.0.0.1:6379/9"
ROOT = Path(__file__).resolve().parent.parent
TARGET_GROWTH = 0.10
REPLY_TIMEOUT_S = 60.0
SLOW_S = 5.0  # statements running longer are listed
PROGRESS_S = 30.0
RSS_EVERY_S = 5.0
# After beat's last send: a run started then ends within the hard time limit (45 s).
DRAIN_S = 60.0
# Settings that would change what runs: the soak's processes get none of the caller's.
NOT_INHERITED = ("SENTRY_DSN", "BOT_TOKEN", "WEBHOOK_URL", "ADMIN_IDS", "ZAVHOZ_QUIET_LOGS")
SMALL = {"admin": 3, "staff": 20, "resident": 500}  # --small: users by role
SMALL_FIRST_ID = 700_000_000  # their Telegram ids

SENDING = re.compile(r"^Scheduler: Sending due task (?P<entry>\S+) \((?P<task>[^)]+)\)")
TASK_LINE = re.compile(r"^Task (?P<name>[\w.]+)\[(?P<id>[^\]]+)\] (?P<rest>.*)", re.S)
SUCCEEDED = re.compile(r"^succeeded in (?P<s>[0-9.eE+-]+)s: (?P<ret>.*)", re.S)
DISCARDED = re.compile(r"^Discarding revoked task: (?P<name>[\w.]+)\[(?P<id>[^\]]+)\]")
HARD_LIMIT = re.compile(r"^Hard time limit .* exceeded for (?P<name>[\w.]+)\[(?P<id>[^\]]+)\]")
CREATED = re.compile(r"^Request #(\d+) created\.")


# --- Processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """`python -m zavhoz ...` in its own process group (a kill reaches pool children too)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "zavhoz", *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def wait_for_log(self, needle: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_path.read_text(errors="replace"):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not log {needle!r}:\n{tail}")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def terminate(self) -> None:
        """SIGTERM to the process itself: a worker's warm shutdown, its pool children finish
        what they run (a SIGTERM to them would kill those tasks)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        """Terminate, then SIGKILL the group: a pool child may outlive its parent."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


def _die_with_parent() -> None:
    """In the child before exec: a SIGTERM when this script dies without its cleanup (a
    SIGKILL); a worker's pool children go with their parent's warm shutdown."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _ppids() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                raw = (entry / "stat").read_text()
                found[int(entry.name)] = int(raw.rsplit(")", 1)[1].split()[1])
    return found


def tree(pid: int, ppids: dict[int, int]) -> list[int]:
    """pid and its descendants, each level in pid order."""
    out, todo = [pid], [pid]
    while todo:
        kids = sorted(p for p, pp in ppids.items() if pp == todo[0])
        todo = todo[1:] + kids
        out += kids
    return out


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


STAGES = ("ready", "warm", "half", "end")  # "half": the middle tick, a plateau's witness


@dataclass
class Memory:
    """RSS of every process of the watched trees, by pid, and of each tree in total, at the
    stages (beat's start, after the warm-up, the end); the peak of every sample."""

    labels: dict[int, str] = field(default_factory=dict)
    at: dict[str, dict[int, float]] = field(default_factory=lambda: {s: {} for s in STAGES})
    trees: dict[str, dict[str, float]] = field(default_factory=lambda: {s: {} for s in STAGES})
    peak: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    _children: dict[str, int] = field(default_factory=dict)

    def sample(self, procs: list[Proc], stage: str | None = None) -> None:
        ppids, now = _ppids(), {}
        for proc in procs:
            total = 0.0
            for pid in tree(proc.popen.pid, ppids):
                mb = rss_mb(pid)
                if mb is None:
                    continue
                if pid not in self.labels:
                    # A replaced pool child (killed at the hard time limit) gets a new number.
                    n = self._children.get(proc.name, -1) + 1
                    self._children[proc.name] = n
                    self.labels[pid] = f"{proc.name} child {n}" if n else proc.name
                now[pid] = mb
                total += mb
                self.peak[pid] = max(self.peak.get(pid, 0.0), mb)
            if stage is not None and total:
                self.trees[stage][proc.name] = total
        if stage is not None:
            self.at[stage].update(now)
        self.last = now


# --- Logs -------------------------------------------------------------------------------------


class LogTail:
    """The JSON lines appended to a log since the last read (Celery's banner is not JSON)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def read(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        out = []
        for line in lines:
            if line.startswith(b"{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


@dataclass
class JobTally:
    entry: str
    sends: list[float] = field(default_factory=list)  # beat's timestamps (Unix)
    finished: dict[str, str] = field(default_factory=dict)  # task id -> ok | skipped | failed
    durations: list[float] = field(default_factory=list)  # runs that did the work
    expired: set[str] = field(default_factory=set)
    retries: int = 0
    skipped_events: int = 0

    @property
    def runs(self) -> int:
        return len(self.finished)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.finished.values() if o == outcome)


class Tally:
    """Per scheduled task: what beat sent and what the workers did, from their logs."""

    def __init__(self, jobs: dict[str, str], beat: Path, workers: list[Path]) -> None:
        self.jobs = {task: JobTally(entry) for entry, task in jobs.items()}
        self.by_entry = {t.entry: t for t in self.jobs.values()}
        self.beat = LogTail(beat)
        self.workers = [LogTail(p) for p in workers]

    def update(self) -> None:
        for line in self.beat.read():
            m = SENDING.match(str(line.get("event", "")))
            if m and m["entry"] in self.by_entry:
                stamp = dt.datetime.fromisoformat(line["timestamp"]).timestamp()
                self.by_entry[m["entry"]].sends.append(stamp)
        for tail in self.workers:
            for line in tail.read():
                self._worker_line(line)

    def _worker_line(self, line: dict[str, Any]) -> None:
        event = str(line.get("event", ""))
        if event == "job.skipped" and line.get("job") in self.jobs:
            self.jobs[line["job"]].skipped_events += 1
            return
        m = TASK_LINE.match(event) or DISCARDED.match(event) or HARD_LIMIT.match(event)
        if not m or m["name"] not in self.jobs:
            return
        job, task_id = self.jobs[m["name"]], m["id"]
        if event.startswith("Discarding"):
            job.expired.add(task_id)
        elif event.startswith("Hard time limit"):
            job.finished[task_id] = "failed"
        elif (rest := m["rest"]).startswith("succeeded"):
            ok = SUCCEEDED.match(rest)
            skipped = ok is not None and "'skipped': 1" in ok["ret"]
            job.finished[task_id] = "skipped" if skipped else "ok"
            if ok is not None and not skipped:
                job.durations.append(float(ok["s"]))
        elif rest.startswith("retry:"):
            job.retries += 1
        elif not rest.startswith("received"):
            job.finished[task_id] = "failed"  # raised (un)expected, INTERNAL ERROR

    def ticks_sent(self) -> int:
        return min(len(t.sends) for t in self.jobs.values())

    def unaccounted(self) -> int:
        """Sent ticks the workers have neither finished nor discarded yet."""
        return sum(
            max(0, len(t.sends) - t.runs - len(t.expired - t.finished.keys()))
            for t in self.jobs.values()
        )


# --- The database -----------------------------------------------------------------------------


def admin_execute(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(conninfo(url, "postgres"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def database_exists(url: str) -> bool:
    import psycopg

    with psycopg.connect(conninfo(url, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database_name(url),)
        ).fetchone()
    return row is not None


def prepare_database(url: str, args: argparse.Namespace, var_dir: Path) -> str:
    """The run's database, made afresh; returns a line saying what it holds."""
    from bench.maintenance import copy_database
    from db import migrate

    name = database_name(url)
    admin_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.small:
        admin_execute(url, f'CREATE DATABASE "{name}"')
        migrate.upgrade(url)
        seed_small(url)
        return f"SMALL: {name}, migrated, {SMALL} users (not the benchmark's data set)"
    base = args.base_url
    marker = read_marker(base) if database_exists(base) else None
    if marker is None or "maintenance" not in marker:
        raise SystemExit(
            f"{database_name(base)} does not hold bench/maintenance.py's data set: run "
            "`.venv/bin/python -m bench.maintenance` first, or try this script with --small"
        )
    t0 = time.monotonic()
    if not copy_database(base, url, tries=5):
        raise SystemExit(f"{database_name(base)} is busy (someone is connected): cannot copy it")
    migrate.upgrade(url)
    line = (
        f"{name}: a copy of {database_name(base)} ({marker['counts']}, comments "
        f"{marker['maintenance']['comments']:,}, anchor {marker['anchor']}) in "
        f"{time.monotonic() - t0:.1f} s"
    )
    if not args.no_plant:
        import psycopg

        from bench.maintenance import plant

        t0 = time.monotonic()
        plants = plant(conninfo(url), marker, var_dir)
        # Not the 1,000 stalled broadcasts (consistency's broadcast_heartbeat): the relay would
        # restart them all in its first run, 6,000 tasks that say nothing about a day's jobs.
        stalled = plants.consistency.pop("broadcast_heartbeat", [])
        with psycopg.connect(conninfo(url), autocommit=True) as conn:
            conn.execute("UPDATE broadcasts SET state = 'done' WHERE id = ANY(%s)", (stalled,))
        kinds = len(plants.consistency) + len(plants.orphans)
        line += (
            f"; planted in {time.monotonic() - t0:.1f} s: {kinds} consistency and orphan kinds, "
            f"{len(plants.overdue)} overdue, retention {sum(plants.retention.values()):,} rows"
        )
        advance_sequences(url)
    return line


def advance_sequences(url: str) -> None:
    """Every id sequence past its table's largest id: the plants are COPYed with explicit ids
    and leave the sequences behind, so the desk's first new requests would collide with them
    (a unique violation, retried, then dead-lettered)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name, pg_get_serial_sequence(quote_ident(table_name), 'id')"
            " FROM information_schema.columns WHERE table_schema = 'public'"
            " AND column_name = 'id'"
        ).fetchall()
        for table, sequence in rows:
            if sequence is not None:
                conn.execute(
                    sql.SQL(
                        "SELECT setval({seq}, greatest((SELECT max(id) FROM {t}),"
                        " (SELECT last_value FROM {s})))"
                    ).format(
                        seq=sql.Literal(sequence),
                        t=sql.Identifier(table),
                        s=sql.SQL(sequence),
                    )
                )


def seed_small(url: str) -> None:
    import psycopg

    rows, tg = [], SMALL_FIRST_ID
    for role, n in SMALL.items():
        for i in range(n):
            rows.append((tg, f"{role.title()} {i}", role))
            tg += 1
    with psycopg.connect(conninfo(url)) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO users (telegram_id, first_name, role, language, reachable)"
            " VALUES (%s, %s, %s, 'en', true)",
            rows,
        )


def users_by_role(url: str, role: str, limit: int | None) -> list[tuple[int, str]]:
    """(Telegram id, first name) of reachable users of a role, spread over the table."""
    import psycopg

    with psycopg.connect(conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT telegram_id, coalesce(first_name, 'X') FROM users WHERE role = %s"
            " AND erased_at IS NULL AND reachable AND telegram_id IS NOT NULL"
            " ORDER BY hashint8(telegram_id) LIMIT %s",
            (role, limit),
        ).fetchall()
    return [(int(tg), str(name)) for tg, name in rows]


def chats(url: str) -> list[tuple[int, str]]:
    """Every private chat the system may write to: each user's, and those of outbox rows."""
    rows = query(
        url,
        "SELECT telegram_id, coalesce(first_name, 'X') FROM users WHERE telegram_id > 0"
        " UNION SELECT DISTINCT chat_id, 'X' FROM outbox WHERE chat_id > 0 AND chat_id NOT IN"
        " (SELECT telegram_id FROM users WHERE telegram_id IS NOT NULL)",
    )
    return [(int(tg), str(name)) for tg, name in rows]


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(conninfo(url)) as conn:
        return list(conn.execute(sql).fetchall())


def job_runs(url: str) -> dict[str, tuple[int, int, str, str | None]]:
    """job -> (runs, failures, last outcome, last error) as `job_runs` keeps them."""
    rows = query(url, "SELECT job, runs, failures, outcome, error FROM job_runs")
    return {str(r[0]): (int(r[1]), int(r[2]), str(r[3]), r[4]) for r in rows}


class Activity:
    """Statements of the run's database seen running longer than SLOW_S (sampled with the RSS):
    what a job that overran its interval or time limit was doing, or waiting for."""

    SQL = (
        "SELECT extract(epoch FROM now() - a.query_start), coalesce(a.wait_event_type || ':'"
        " || a.wait_event, 'cpu'), left(regexp_replace(a.query, '\\s+', ' ', 'g'), 110),"
        " (SELECT left(regexp_replace(b.query, '\\s+', ' ', 'g'), 60) FROM pg_stat_activity b"
        " WHERE b.pid = (pg_blocking_pids(a.pid))[1]) FROM pg_stat_activity a"
        " WHERE a.datname = current_database() AND a.state = 'active'"
        " AND a.pid <> pg_backend_pid() AND now() - a.query_start > make_interval(secs => %s)"
    )

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(conninfo(url), autocommit=True)
        self.seen: dict[str, tuple[float, set[str]]] = {}

    def sample(self) -> None:
        with contextlib.suppress(Exception):  # the database may be going away at the end
            for age, wait, statement, blocker in self.conn.execute(self.SQL, (SLOW_S,)):
                longest, waits = self.seen.get(statement, (0.0, set()))
                waits.add(f"{wait}" + (f" behind: {blocker}" if blocker else ""))
                self.seen[statement] = (max(longest, float(age)), waits)

    def rows(self) -> list[list[str]]:
        slowest = sorted(self.seen.items(), key=lambda kv: -kv[1][0])[:10]
        return [[f"{age:.0f}", "; ".join(sorted(w))[:120], q] for q, (age, w) in slowest]

    def close(self) -> None:
        self.conn.close()


# --- The desk trickle -------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    latency_s: float | None  # None: no reply within REPLY_TIMEOUT_S


class Trickle:
    """Open-loop desk traffic: each command is published when its time comes, by an actor
    with no command of their own in flight (else it is counted as not sent), and its reply
    is awaited in a thread of its own."""

    def __init__(
        self,
        sandbox_url: str,
        broker_url: str,
        residents: list[tuple[int, str]],
        staff: list[tuple[int, str]],
        args: argparse.Namespace,
    ) -> None:
        from bot.enqueue import CommandQueue
        from tests.support.sandbox_api import SandboxAPI

        self.api = SandboxAPI(sandbox_url)
        self.publisher = CommandQueue(broker_url)
        self.rate, self.create_every = args.rate, args.create_every
        self.names = dict(residents + staff)
        self.free = {"resident": [u for u, _ in residents], "staff": [u for u, _ in staff]}
        self.seen: dict[int, int] = {}
        self.fresh: list[int] = []  # requests the trickle created, for staff to accept
        self.samples: list[Sample] = []
        self.not_sent = 0
        self.lock = threading.Lock()
        self.stopping, self.abandoned = threading.Event(), threading.Event()
        self.rng = random.Random(20261201)
        self.run_id = f"{int(time.time())}"
        self.serial = 0
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="trickle")
        self.thread = threading.Thread(target=self._schedule, name="trickle", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, *, abandon: bool = False) -> None:
        """No new commands; wait for the replies of those in flight (abandon: not for long)."""
        self.stopping.set()
        if abandon:
            self.abandoned.set()
        if self.thread.is_alive():
            self.thread.join()
        self.pool.shutdown(wait=True)

    def _schedule(self) -> None:
        start = time.monotonic()
        next_read = start + self.rng.expovariate(self.rate)
        next_create = start + 1.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= next_create:
                self._submit("create", "resident")
                next_create += self.create_every
            if now >= next_read:
                with self.lock:
                    accept = bool(self.fresh) and self.rng.random() < 0.3
                if accept:
                    self._submit("accept", "staff")
                else:
                    kind = self.rng.choices(["my", "queue"], weights=[3, 2])[0]
                    self._submit(kind, "resident" if kind == "my" else "staff")
                next_read += self.rng.expovariate(self.rate)
            self.stopping.wait(max(0.0, min(next_read, next_create) - time.monotonic()))

    def _submit(self, kind: str, role: str) -> None:
        with self.lock:
            if not self.free[role] or (kind == "accept" and not self.fresh):
                self.not_sent += 1
                return
            actor = self.free[role].pop(self.rng.randrange(len(self.free[role])))
            request_id = self.fresh.pop(0) if kind == "accept" else 0
            self.serial += 1
            key = f"soak:{self.run_id}:{self.serial}"
        self.pool.submit(self._one, kind, role, actor, request_id, key)

    def _command(self, kind: str, actor: int, request_id: int, key: str) -> Any:
        from core import commands as c
        from core.domain import Action, Priority

        who = c.Actor(user_id=actor, chat_id=actor, language="en", first_name=self.names[actor])
        common: dict[str, Any] = {
            "idempotency_key": key,
            "actor": who,
            "issued_at": dt.datetime.now(dt.UTC),
        }
        if kind == "create":
            priority = self.rng.choice([Priority.LOW, Priority.NORMAL, Priority.NORMAL])
            return c.CreateRequest(
                **common,
                title="Dripping tap",
                description="The kitchen tap drips all night (soak).",
                location=f"Flat {actor % 300 + 1}",
                priority=priority,
            )
        if kind == "my":
            return c.ShowMyRequests(**common)
        if kind == "queue":
            return c.ShowQueue(**common)
        return c.TransitionRequest(**common, request_id=request_id, action=Action.ACCEPT)

    @staticmethod
    def _reply(kind: str, text: str, request_id: int) -> bool:
        """Whether a bot message in the actor's chat is this command's reply (staff chats also
        get new-request and overdue notices, residents status notices)."""
        if kind == "create":
            return CREATED.match(text) is not None
        if kind == "my":
            return text.startswith(("Your requests", "You have no requests"))
        if kind == "queue":
            return text.startswith(("Queue", "The queue is empty"))
        return re.match(rf"Request #{request_id}\b(?! «)", text) is not None

    def _one(self, kind: str, role: str, actor: int, request_id: int, key: str) -> None:
        latency: float | None = None
        try:
            # Skip what reached the chat before: only this command's reply counts.
            seen = self.seen.get(actor, 0)
            seen = max([seen] + [m["seq"] for m in self.api.messages(actor, after=seen)])
            command = self._command(kind, actor, request_id, key)
            t0 = time.monotonic()
            self.publisher.publish(command)
            while latency is None and not self.abandoned.is_set():
                left = t0 + REPLY_TIMEOUT_S - time.monotonic()
                if left <= 0:
                    break
                for m in self.api.messages(actor, after=seen, wait=min(left, 5.0)):
                    seen = max(seen, m["seq"])
                    text = m["text"] or ""
                    if latency is None and self._reply(kind, text, request_id):
                        latency = time.monotonic() - t0
                        if kind == "create" and (found := CREATED.match(text)):
                            with self.lock:
                                self.fresh.append(int(found[1]))
            self.seen[actor] = seen
        except Exception as error:
            print(f"trickle: {kind} by {actor}: {type(error).__name__}: {error}", flush=True)
        finally:
            with self.lock:
                self.samples.append(Sample(kind, latency))
                self.free[role].append(actor)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_rows(samples: list[Sample]) -> list[list[str]]:
    rows = []
    for kind in ("create", "my", "queue", "accept", "all"):
        got = [s for s in samples if kind in ("all", s.kind)]
        if not got:
            continue
        ms = [s.latency_s * 1000 for s in got if s.latency_s is not None]
        rows.append(
            [
                kind,
                f"{len(got)}",
                f"{len(got) - len(ms)}",
                f"{percentile(ms, 0.5):.0f}" if ms else "-",
                f"{percentile(ms, 0.95):.0f}" if ms else "-",
                f"{max(ms):.0f}" if ms else "-",
            ]
        )
    return rows


# --- The run ----------------------------------------------------------------------------------


def post_json(url: str, body: Any) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
            return
        if proc.popen.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer at {url}")


def seconds(values: list[float]) -> tuple[str, str, str]:
    if not values:
        return "-", "-", "-"
    return f"{min(values):.2f}", f"{statistics.median(values):.2f}", f"{max(values):.2f}"


def jobs_table(
    tally: Tally, ticks: int, interval: float, recorded: dict[str, int]
) -> tuple[str, bool]:
    rows, all_ran = [], True
    for task, t in tally.jobs.items():
        ran = t.runs == ticks and len(t.sends) == ticks
        all_ran &= ran
        lo, mid, hi = seconds(t.durations)
        rows.append(
            [
                t.entry,
                task,
                f"{ticks}",
                f"{len(t.sends)}",
                f"{t.runs}" + ("" if ran else " (!)"),
                f"{t.count('failed')}",
                f"{t.skipped_events}",
                f"{len(t.expired - t.finished.keys())}",
                f"{t.retries}",
                lo,
                mid,
                hi,
                f"{sum(1 for d in t.durations if d > interval)}",
                f"{recorded.get(task, 0)}",
            ]
        )
    head = ["job", "task", "ticks", "sends", "runs", "failures", "skipped", "expired"]
    head += ["retries", "min s", "median s", "max s", f"> {interval:g} s", "job_runs +"]
    return render_table(head, rows), all_ran


def rss_table(memory: Memory) -> tuple[str, bool]:
    """One row a process, then one a tree (a worker and its pool children) in total."""
    rows, flat = [], True

    def row(label: str, pid: str, values: list[float | None], peak: float | None) -> None:
        nonlocal flat
        _, warm, half, end = values
        growth = None if warm is None or end is None else (end - warm) / warm
        second = None if half is None or end is None else (end - half) / half
        if growth is not None:
            flat &= growth < TARGET_GROWTH
        verdict = "gone" if end is None else ("new" if warm is None else "")
        if growth is not None:
            verdict = "yes" if growth < TARGET_GROWTH else "NO"
        cells = [label, pid, *map(_mb, values), _mb(peak)]
        rows.append([*cells, _pct(growth), _pct(second), verdict])

    for pid, label in memory.labels.items():
        values = [memory.at[stage].get(pid) for stage in STAGES]
        row(label, str(pid), values, memory.peak.get(pid))
    for name in memory.trees["ready"]:
        if any(label.startswith(f"{name} child") for label in memory.labels.values()):
            values = [memory.trees[stage].get(name) for stage in STAGES]
            row(f"{name}, whole tree", "", values, None)
    head = ["process", "pid", "beat start MB", "after warm-up MB", "half-way MB", "end MB"]
    head += ["peak MB", "growth %", "second half %", "< 10 %"]
    return render_table(head, rows), flat


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler_soak", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--ticks", type=int, default=144, help="beat sends of each job")
    parser.add_argument("--interval", type=float, default=10.0, help="SCHEDULE_<JOB> seconds")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, every queue")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children a worker")
    parser.add_argument("--rate", type=float, default=2.0, help="/my and /queue a second")
    parser.add_argument("--create-every", type=float, default=60.0, help="s between requests")
    parser.add_argument("--residents", type=int, default=40, help="residents in the trickle")
    parser.add_argument("--staff", type=int, default=8, help="staff members in the trickle")
    parser.add_argument(
        "--queues",
        default="",
        help="queues of each worker, '/' between workers, round robin (default: every queue), "
        "e.g. interactive,notifications,privacy/maintenance,reports",
    )
    parser.add_argument("--warm-ticks", type=int, default=3, help="ticks before RSS growth")
    parser.add_argument("--small", action="store_true", help="a small data set (a try-out)")
    parser.add_argument("--no-plant", action="store_true", help="without the planted set")
    parser.add_argument("--keep", action="store_true", help="keep the database and Redis data")
    parser.add_argument("--database-url", default=DEFAULT_URL, help="the run's (dropped) database")
    parser.add_argument("--base-url", default=BASE_URL, help="what the run's database copies")
    parser.add_argument("--redis-url", default=REDIS_URL, help="flushed at the start")
    args = parser.parse_args(argv)
    if args.ticks < 1 or args.interval <= 0 or args.workers < 1 or args.concurrency < 1:
        parser.error("--ticks, --interval, --workers and --concurrency must be positive")
    if args.rate <= 0 or args.create_every <= 0 or args.residents < 1 or args.staff < 1:
        parser.error("--rate, --create-every, --residents and --staff must be positive")
    if "bench" not in database_name(args.database_url):
        parser.error(f"refusing to drop {database_name(args.database_url)!r}: not a bench database")
    return args


def _terminate(*_: object) -> None:
    print("SIGTERM: stopping everything this run started", file=sys.stderr, flush=True)
    raise SystemExit(130)  # a SIGTERM runs the cleanup below like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    run_dir = Path(tempfile.mkdtemp(prefix="zavhoz-soak-"))
    var_dir = run_dir / "var"
    url = args.database_url
    port = free_port()
    sandbox_url = f"http://127.0.0.1:{port}"
    # The driver's own settings (it publishes commands and plants data): the children's below.
    os.environ.update(DATABASE_URL=url, REDIS_URL=args.redis_url, VAR_DIR=str(var_dir))
    os.environ.update(LOG_LEVEL="WARNING", LOG_FORMAT="console", TELEGRAM_API_URL=sandbox_url)
    from core.logging import configure_logging
    from core.settings import get_settings
    from workers.app import SCHEDULED_JOBS

    get_settings.cache_clear()
    configure_logging("console", "WARNING")
    every = f"{args.interval:g}"
    settings = {
        "DATABASE_URL": url,
        "REDIS_URL": args.redis_url,
        "TELEGRAM_API_URL": sandbox_url,
        "VAR_DIR": str(var_dir),
        "LOG_LEVEL": "INFO",  # Celery's received/succeeded lines and beat's sends
        "LOG_FORMAT": "json",
        **{f"SCHEDULE_{job.upper()}": every for job in SCHEDULED_JOBS},
    }
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED} | settings
    layout = [q.strip() for q in args.queues.split("/")] if args.queues else [""]
    worker_argv = []
    for i in range(args.workers):
        queues = layout[i % len(layout)]
        celery = ["-c", str(args.concurrency), "-n", f"soak{i + 1}@%h"]
        worker_argv.append(["worker", *(["-Q", queues] if queues else []), "--", *celery])

    python = os.path.relpath(sys.executable, ROOT)  # .venv/bin/python, as it was typed
    command = [python, "-m", "bench.scheduler_soak", *sys.argv[1:]]
    print(f"$ {shlex.join(command)}")
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, cpus: {os.cpu_count()}")
    print(f"settings: {' '.join(f'{k}={v}' for k, v in settings.items())}")
    print(
        f"processes: `zavhoz sandbox --port {port}`, "
        + ", ".join(f"`zavhoz {' '.join(argv)}`" for argv in worker_argv)
        + f" (prefork; no -Q: every queue), `zavhoz beat`; logs in {run_dir}"
    )
    print(
        f"desk trickle: /my and /queue at {args.rate:g}/s (open loop), a new request every "
        f"{args.create_every:g} s, staff accept each; {args.residents} residents, "
        f"{args.staff} staff"
    )

    procs: list[Proc] = []
    trickle: Trickle | None = None
    activity: Activity | None = None
    memory = Memory()
    tally: Tally | None = None
    before: dict[str, tuple[int, int, str, str | None]] = {}
    after: dict[str, tuple[int, int, str, str | None]] = {}
    extras: list[str] = []
    started = time.monotonic()
    try:
        print(f"data set: {prepare_database(url, args, var_dir)}", flush=True)
        flush_redis(args.redis_url)
        residents = users_by_role(url, "resident", args.residents)
        staff_all = users_by_role(url, "staff", None)
        admins = users_by_role(url, "admin", None)
        staff = staff_all[: args.staff]
        if not residents or not staff:
            raise SystemExit("the data set has no residents or no staff to make desk traffic")

        procs.append(Proc("sandbox", ["sandbox", "--port", str(port)], env, run_dir))
        wait_http(f"{sandbox_url}/sandbox/stats", procs[0])
        # Every user has a chat, as on Telegram (pending outbox rows of the data set go to
        # residents too): else those sends end "chat not found" after taking their slot.
        people = chats(url)
        for i in range(0, len(people), 5000):
            users = [{"id": u, "first_name": name} for u, name in people[i : i + 5000]]
            post_json(f"{sandbox_url}/sandbox/users", users)

        workers = []
        for n, argv in enumerate(worker_argv, 1):
            workers.append(Proc(f"worker{n}", argv, env, run_dir))
        procs += workers
        for proc in workers:
            proc.wait_for_log("ready.", timeout=180)
        before = job_runs(url)
        beat = Proc("beat", ["beat"], env, run_dir)
        procs.append(beat)
        beat.wait_for_log("beat: Starting", timeout=120)
        tally = Tally(SCHEDULED_JOBS, beat.log_path, [w.log_path for w in workers])
        watched = [p for p in procs if p.name != "sandbox"]
        memory.sample(watched, "ready")
        beat_started = time.monotonic()
        print(
            f"up in {beat_started - started:.0f} s; {len(staff_all)} staff, {len(admins)} admins,"
            f" {len(people):,} chats",
            flush=True,
        )

        activity = Activity(url)
        trickle = Trickle(sandbox_url, args.redis_url, residents, staff, args)
        trickle.start()
        deadline = beat_started + (args.ticks + 3) * args.interval + 30
        next_progress = next_rss = time.monotonic()
        while tally.ticks_sent() < args.ticks and time.monotonic() < deadline:
            time.sleep(0.5)
            tally.update()
            for proc in procs:
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode})")
            if time.monotonic() >= next_rss:
                memory.sample(watched)
                activity.sample()
                next_rss += RSS_EVERY_S
            if not memory.at["warm"] and tally.ticks_sent() > args.warm_ticks:
                memory.sample(watched, "warm")  # the warm-up ticks have had an interval
            if not memory.at["half"] and tally.ticks_sent() > args.ticks // 2:
                memory.sample(watched, "half")
            if time.monotonic() >= next_progress:
                print(progress(tally, trickle, memory, args.ticks, beat_started), flush=True)
                next_progress += PROGRESS_S
        memory.sample([beat], "end")  # the workers' end comes once their runs are done
        beat.stop()
        trickle.stopping.set()  # no new commands; those in flight are awaited below
        drain_until = time.monotonic() + DRAIN_S
        tally.update()
        while tally.unaccounted() and time.monotonic() < drain_until:
            time.sleep(0.5)
            tally.update()
        trickle.stop()
        if not memory.at["warm"]:
            memory.at["warm"], memory.trees["warm"] = memory.at["ready"], memory.trees["ready"]
        if not memory.at["half"]:
            memory.at["half"], memory.trees["half"] = memory.at["warm"], memory.trees["warm"]
            extras.append(f"fewer than {args.warm_ticks + 1} ticks: growth is from beat's start")
        memory.sample(workers, "end")
        print(progress(tally, trickle, memory, args.ticks, beat_started), flush=True)
        after = job_runs(url)
        outbox = query(url, "SELECT state, count(*) FROM outbox GROUP BY state ORDER BY state")
        dead = query(url, "SELECT count(*) FROM dead_letters")[0][0]
        with urllib.request.urlopen(f"{sandbox_url}/sandbox/stats", timeout=30) as response:
            stats = json.loads(response.read())
        extras.append(
            "outbox at the end: "
            + ", ".join(f"{s} {n:,}" for s, n in outbox)
            + f"; dead letters: {dead}; sandbox: {stats['sent_total']:,} sends accepted"
            f" {stats['sent_by_method']}, {stats['rejected_429']} answered 429, busiest second"
            f" {stats['max_sends_in_1s_window']}"
        )
        for task, (_, failures, outcome, error) in sorted(after.items()):
            if error:
                extras.append(f"job_runs {task}: last {outcome}, {failures} failures: {error}")
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short and leave processes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if trickle is not None:
            trickle.stop(abandon=True)
        if activity is not None:
            activity.close()
        for proc in procs:
            if proc.name != "sandbox":  # last: what is still sent goes somewhere
                proc.terminate()  # all at once: each worker's warm shutdown takes its time
        for proc in reversed(procs):
            proc.stop()
        if not args.keep:
            with contextlib.suppress(Exception):
                flush_redis(args.redis_url)
            with contextlib.suppress(Exception):
                admin_execute(url, f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')

    assert tally is not None and trickle is not None
    recorded = {job: after[job][0] - before.get(job, (0,))[0] for job in after}
    jobs, all_ran = jobs_table(tally, args.ticks, args.interval, recorded)
    rss, flat = rss_table(memory)
    sends = sorted(s for t in tally.jobs.values() for s in t.sends)
    span = sends[-1] - sends[0] if sends else 0.0
    print()
    print(jobs)
    print()
    print(rss)
    print()
    head = ["desk command", "sent", "no reply", "p50 ms", "p95 ms", "max ms"]
    print(render_table(head, latency_rows(trickle.samples)))
    print()
    print(
        f"beat: first to last send {span:.0f} s (ticks at {args.interval:g} s: "
        f"{(args.ticks - 1) * args.interval:.0f} s); desk commands not sent (every actor of "
        f"the kind busy, or nothing to accept): {trickle.not_sent}; wall time "
        f"{time.monotonic() - started:.0f} s"
    )
    if activity is not None and activity.seen:
        print()
        head = ["longest s", "waiting on (behind: the blocker's statement)", "statement"]
        print(f"statements running over {SLOW_S:g} s (sampled every {RSS_EVERY_S:g} s):")
        print(render_table(head, activity.rows()))
    print()
    for line in extras:
        print(line)
    print(f"target, runs = ticks for every job: {'MET' if all_ran else 'MISSED'}")
    print(f"target, RSS growth under 10 % after warm-up: {'MET' if flat else 'MISSED'}")
    return 0


def progress(tally: Tally, trickle: Trickle, memory: Memory, ticks: int, since: float) -> str:
    jobs = tally.jobs.values()
    runs = sum(t.runs for t in jobs)
    failed = sum(t.count("failed") for t in jobs)
    skipped = sum(t.skipped_events for t in jobs)
    expired = sum(len(t.expired - t.finished.keys()) for t in jobs)
    with trickle.lock:
        ms = [s.latency_s * 1000 for s in trickle.samples if s.latency_s is not None]
        sent = len(trickle.samples)
    desk = f"desk {sent} replied {len(ms)}"
    if ms:
        desk += f" p50 {percentile(ms, 0.5):.0f} ms p95 {percentile(ms, 0.95):.0f} ms"
    latest = memory.at["end"] or memory.last  # at the end, beat's last sample was before it stopped
    workers = sum(mb for pid, mb in latest.items() if memory.labels[pid] != "beat")
    beat = sum(mb for pid, mb in latest.items() if memory.labels[pid] == "beat")
    elapsed = time.monotonic() - since
    return (
        f"[{int(elapsed // 60):3d}:{int(elapsed % 60):02d}] tick {tally.ticks_sent()}/{ticks}, "
        f"runs {runs}, failed {failed}, skipped {skipped}, expired {expired}; {desk}; "
        f"RSS workers {workers:.0f} MB, beat {beat:.0f} MB"
    )


if __name__ == "__main__":
    sys.exit(main())
