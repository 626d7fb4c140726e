"""Scheduled jobs: one run at a time per job across every worker and host, each run recorded.

A second run that starts while one is going (two beats, a redelivery, ops running it by hand)
exits at once and says so: a PostgreSQL advisory lock held by the run's own connection (freed
if its process dies), or on embedded defaults (one machine) a file lock under VAR_DIR. The last
run of every job (when, how long, what it did or why it failed) is kept in `job_runs`.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from core.clock import now
from core.logging import get_logger
from core.settings import get_settings
from db.models import JobRun
from db.session import get_engine, session_scope

log = get_logger(__name__)

SKIPPED = {"skipped": 1}


@contextmanager
def exclusive(job: str) -> Iterator[bool]:
    """Whether this run holds the job's lock (held until the block ends)."""
    engine = get_engine()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            key = func.hashtextextended(job, 0)
            got = bool(conn.scalar(select(func.pg_try_advisory_lock(key))))
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                    conn.commit()
        return
    locks = get_settings().var_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{job}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_job(job: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `work` if no other run of `job` is going, and record how it went."""
    with exclusive(job) as mine:
        if not mine:
            log.info("job.skipped", job=job, reason="another run of this job is going")
            return SKIPPED
        started, clock = now(), time.monotonic()
        try:
            counts = work()
        except Exception as error:
            _record(job, started, time.monotonic() - clock, {}, f"{type(error).__name__}: {error}")
            raise
        _record(job, started, time.monotonic() - clock, counts, None)
        return counts


def _record(
    job: str, started: datetime, duration_s: float, counts: dict[str, Any], error: str | None
) -> None:
    with session_scope() as session:
        row = session.get(JobRun, job)
        if row is None:
            row = JobRun(job=job, runs=0, failures=0)
            session.add(row)
        row.started_at, row.duration_s = started, round(duration_s, 3)
        row.outcome = "failed" if error else "ok"
        row.counts, row.error = counts, (error or None) and error[:2000]
        row.runs += 1
        row.failures += 1 if error else 0


def last_runs() -> list[JobRun]:
    with session_scope() as session:
        rows = list(session.scalars(select(JobRun).order_by(JobRun.job)))
        session.expunge_all()
        return rows


def cursor(job: str) -> dict[str, Any] | None:
    """Where `job` got to, as it saved it (see save_cursor)."""
    with session_scope() as session:
        return session.scalar(select(JobRun.cursor).where(JobRun.job == job))


def save_cursor(job: str, value: dict[str, Any]) -> None:
    with session_scope() as session:
        row = session.get(JobRun, job)
        if row is None:  # before its first recorded run
            row = JobRun(job=job, started_at=now(), duration_s=0.0, outcome="ok", counts={})
            row.runs, row.failures = 0, 0
            session.add(row)
        row.cursor = value
