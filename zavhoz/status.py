"""`zavhoz status [--json] [--max-age S]`: the system on one screen, and a probe.

Queues (depth, age of the oldest message by the `zavhoz_sent_at` header every producer
stamps), the outbox by state with the oldest pending row's age, broadcasts in flight, the
workers alive with their queues (Celery's remote control; the embedded broker has none), the
beat lock, each scheduled job's last and next run, dead letters and 429s of the last hour.
Exits 1 when something is unhealthy: a queue no worker consumes, a queue or the outbox with
work older than --max-age, beat silent (the relay job, every SCHEDULE_RELAY, has not run for
three of its intervals and at least two minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from core.queues import ALL_QUEUES
from core.schedules import Cron, Interval
from core.settings import get_settings

BEAT_LOCK_KEY = "zavhoz:redbeat::lock"
DEFAULT_MAX_AGE_S = 300.0


@dataclass
class Status:
    queues: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[str, Any] = field(default_factory=dict)
    broadcasts: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] | None = None  # None: the broker has no remote control
    beat_lock: str = "n/a"
    jobs: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # who serves where (METRICS_PORT)
    problems: list[str] = field(default_factory=list)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("status", help="queues, outbox, workers, jobs; exit 1 if unhealthy")
    parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE_S,
        help=f"seconds of waiting work that count as a backlog (default {DEFAULT_MAX_AGE_S:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workers.failures import is_outage

    try:
        status = collect(args.max_age)
    except Exception as error:
        if not is_outage(error):
            raise
        # A probe's answer: unhealthy, and why, in one line (never a traceback).
        problem = f"cannot reach {_service_of(error)} ({type(error).__name__})"
        if args.json:
            print(json.dumps({"problems": [problem]}))
        else:
            print(f"Unhealthy: {problem}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(status), default=str, indent=2))
    else:
        show(status)
    return 1 if status.problems else 0


def _service_of(error: BaseException) -> str:
    import redis.exceptions
    import sqlalchemy.exc

    from core.errors import cause_chain

    causes = list(cause_chain(error))
    if any(isinstance(cause, redis.exceptions.RedisError) for cause in causes):
        return "Redis"
    if any(isinstance(cause, sqlalchemy.exc.SQLAlchemyError) for cause in causes):
        return "the database"
    return "the broker"


def collect(max_age_s: float, *, at: float | None = None) -> Status:
    at = time.time() if at is None else at
    status = Status()
    status.queues = _queues(at)
    status.workers = _workers()
    status.beat_lock = _beat_lock()
    status.metrics = _metrics()
    _database(status, at)
    _judge(status, max_age_s, at)
    return status


# --- the broker ------------------------------------------------------------------------------


def _queues(at: float) -> list[dict[str, Any]]:
    from workers.backlog import queue_backlog

    return [
        {
            "queue": queue,
            "depth": depth,
            "oldest_s": None if sent is None else round(max(0.0, at - sent), 1),
        }
        for queue, (depth, sent) in queue_backlog().items()
    ]


def _workers() -> list[dict[str, Any]] | None:
    if get_settings().embedded:
        return None  # kombu's SQL transport has no broadcast: nothing answers inspect
    from workers.app import app

    inspect = app.control.inspect(timeout=1.0)
    queues: dict[str, Any] = inspect.active_queues() or {}
    stats: dict[str, Any] = inspect.stats() or {}
    active: dict[str, Any] = inspect.active() or {}
    return [
        {
            "name": name,
            "queues": sorted(q["name"] for q in queues.get(name, [])),
            "running": len(active.get(name, [])),
            "uptime_s": stats.get(name, {}).get("uptime"),
            "pool": (stats.get(name, {}).get("pool") or {}).get("max-concurrency"),
        }
        for name in sorted(set(queues) | set(stats))
    ]


def _beat_lock() -> str:
    url = get_settings().redis_url
    if url is None:
        return "n/a (embedded: one beat)"
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        ttl = int(client.pttl(BEAT_LOCK_KEY))
    finally:
        client.close()
    return "free: no beat holds it" if ttl < 0 else f"held (renewed within {ttl / 1000:.0f} s)"


def _metrics() -> list[dict[str, Any]]:
    from core.metrics import endpoints

    return [{**asdict(e), "url": e.url} for e in endpoints(get_settings())]


# --- the database ----------------------------------------------------------------------------


def _database(status: Status, at: float) -> None:
    from sqlalchemy import func, select

    from core.clock import as_utc
    from core.states import BroadcastState, OutboxState
    from db.models import Broadcast, DeadLetter, Outbox
    from db.session import session_scope
    from workers.app import beat_schedule
    from workers.backlog import letters_waiting, outbox_states
    from workers.upkeep.jobs import last_runs

    hour_ago = datetime.fromtimestamp(at - 3600).astimezone()
    with session_scope() as session:
        states, oldest = outbox_states(session)
        throttled = session.scalar(
            select(func.count())
            .select_from(Outbox)
            .where(Outbox.created_at >= hour_ago, Outbox.last_error.like("%RetryAfter%"))
        )
        status.outbox = {
            **states,
            "oldest_pending_s": None
            if oldest is None
            else round(max(0.0, at - as_utc(oldest).timestamp()), 1),
            "429_last_hour": int(throttled or 0),
        }
        for b in session.scalars(
            select(Broadcast)
            .where(Broadcast.state == BroadcastState.SENDING)
            .order_by(Broadcast.id)
        ):
            sent = session.scalar(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.batch_id == b.id, Outbox.state == OutboxState.SENT)
            )
            status.broadcasts.append(
                {
                    "id": b.id,
                    "sent": int(sent or 0),
                    "total": b.total,
                    "heartbeat_s": None
                    if b.heartbeat_at is None
                    else round(at - as_utc(b.heartbeat_at).timestamp(), 1),
                }
            )
        waiting = letters_waiting(session)
        recent = session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.created_at >= hour_ago)
        )
        status.dead_letters = {"waiting": waiting, "last_hour": int(recent or 0)}
    settings = get_settings()
    entries = beat_schedule(settings)
    runs = {r.job: r for r in last_runs()}
    from workers.app import SCHEDULED_JOBS

    for job, task in SCHEDULED_JOBS.items():
        run_ = runs.get(task)
        when = settings.schedule(job)
        entry = entries.get(job)
        status.jobs.append(
            {
                "job": task,
                "schedule": getattr(settings, f"schedule_{job}") or "disabled",
                "last_started": None if run_ is None else as_utc(run_.started_at).isoformat(),
                "took_s": None if run_ is None else round(run_.duration_s, 2),
                "outcome": None if run_ is None else run_.outcome,
                "failures": 0 if run_ is None else run_.failures,
                "next_run": _next_run(when, entry, run_, at),
            }
        )


def _next_run(when: Any, entry: dict[str, Any] | None, run: Any, at: float) -> str | None:
    from core.clock import as_utc

    if entry is None or when is None:
        return None
    if isinstance(when, Interval):
        if run is None:
            return "at beat's next tick"
        due = as_utc(run.started_at) + timedelta(seconds=when.seconds)
        return max(due, datetime.fromtimestamp(at).astimezone()).isoformat(timespec="seconds")
    if isinstance(when, Cron):
        now = datetime.fromtimestamp(at).astimezone()
        left: timedelta = entry["schedule"].remaining_estimate(now)
        # Celery's estimate is off by its own clock reads: cron fires on the minute.
        due = (now + left + timedelta(seconds=30)).replace(second=0, microsecond=0)
        return due.isoformat(timespec="seconds")
    return None


# --- judging and showing ---------------------------------------------------------------------


def _judge(status: Status, max_age_s: float, at: float) -> None:
    problems = status.problems
    for q in status.queues:
        if q["oldest_s"] is not None and q["oldest_s"] > max_age_s:
            problems.append(f"queue {q['queue']}: oldest message waits {q['oldest_s']:.0f} s")
    if status.workers is not None:
        served = {queue for w in status.workers for queue in w["queues"]}
        for queue in ALL_QUEUES:
            if queue not in served:
                problems.append(f"queue {queue}: no worker consumes it")
    pending_age = status.outbox.get("oldest_pending_s")
    if pending_age is not None and pending_age > max_age_s:
        problems.append(f"outbox: a message pending for {pending_age:.0f} s")
    relay = get_settings().schedule("relay")
    if isinstance(relay, Interval):
        silent_after = max(3 * relay.seconds, 120.0)
        last = next((j for j in status.jobs if j["job"] == "maintenance.relay_outbox"), {})
        started: str | None = last.get("last_started")
        if started is None or at - datetime.fromisoformat(started).timestamp() > silent_after:
            problems.append(f"beat: the relay job has not run for {silent_after:.0f} s")


def show(status: Status) -> None:
    console = Console()
    queues = Table(title="Queues", title_justify="left")
    for column in ("queue", "depth", "oldest (s)"):
        queues.add_column(column)
    for q in status.queues:
        queues.add_row(q["queue"], str(q["depth"]), _num(q["oldest_s"]))
    console.print(queues)
    box = status.outbox
    counts = ", ".join(f"{k} {v}" for k, v in box.items() if k != "oldest_pending_s")
    console.print(f"Outbox: {counts}; oldest pending {_num(box.get('oldest_pending_s'))} s")
    for b in status.broadcasts:
        console.print(
            f"Broadcast #{b['id']}: {b['sent']}/{b['total']} sent,"
            f" heartbeat {_num(b['heartbeat_s'])} s ago"
        )
    if status.workers is None:
        console.print("Workers: not known (the embedded broker has no remote control)")
    else:
        workers = Table(title="Workers", title_justify="left")
        for column in ("name", "queues", "running", "pool", "uptime (s)"):
            workers.add_column(column)
        for w in status.workers:
            workers.add_row(
                w["name"], ",".join(w["queues"]), str(w["running"]), str(w["pool"]),
                str(w["uptime_s"]),
            )  # fmt: skip
        console.print(workers)
    console.print(f"Beat lock: {status.beat_lock}")
    jobs = Table(title="Scheduled jobs (UTC)", title_justify="left")
    jobs.add_column("job", no_wrap=True)
    for column in ("schedule", "last started", "took (s)", "outcome", "failures", "next"):
        jobs.add_column(column, overflow="fold")
    for j in status.jobs:
        jobs.add_row(
            j["job"], j["schedule"], _when(j["last_started"]) or "never", _num(j["took_s"]),
            j["outcome"] or "-", str(j["failures"]), _when(j["next_run"]) or "-",
        )  # fmt: skip
    console.print(jobs)
    if status.metrics:
        served = Table(title="Metrics (Prometheus)", title_justify="left")
        for column in ("process", "pid", "url"):
            served.add_column(column)
        for m in status.metrics:
            served.add_row(m["role"], str(m["pid"]), m["url"])
        console.print(served)
    else:
        console.print("Metrics: not served (METRICS_PORT is unset)")
    letters = status.dead_letters
    console.print(
        f"Dead letters: {letters.get('waiting', 0)} waiting, {letters.get('last_hour', 0)} in the"
        " last hour (zavhoz commands list / replay)"
    )
    if status.problems:
        console.print("[bold red]Unhealthy:[/]")
        for problem in status.problems:
            console.print(f"  - {problem}")
    else:
        console.print("[green]Healthy[/]")


def _when(iso: str | None) -> str | None:
    """An ISO time as UTC "MM-DD HH:MM:SS"; other words ("at beat's next tick") as they are."""
    if iso is None:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
