"""On PostgreSQL a job's lock is an advisory lock: a second run on another connection (another
worker or host) exits at once; a run's death frees it."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from db.models import JobRun
from tests.support.processes import Processes, beat_sends
from workers.upkeep.jobs import SKIPPED, last_runs, run_job


def test_advisory_lock_lets_one_run_through(pg: Engine) -> None:
    inside, release = threading.Event(), threading.Event()

    def slow() -> dict[str, int]:
        inside.set()
        release.wait(10)
        return {"n": 1}

    first = threading.Thread(target=lambda: run_job("maintenance.escalate", slow))
    first.start()
    assert inside.wait(10)
    assert run_job("maintenance.escalate", lambda: {"n": 2}) == SKIPPED
    release.set()
    first.join()
    assert run_job("maintenance.escalate", lambda: {"n": 3}) == {"n": 3}
    (run,) = last_runs()
    assert (run.job, run.runs, run.counts) == ("maintenance.escalate", 2, {"n": 3})


TICK_S = 3
JOBS = {  # schedule entry -> task (workers.app.SCHEDULED_JOBS), every one on a 3 s interval
    "relay": "maintenance.relay_outbox",
    "retention": "maintenance.retention",
    "escalate": "maintenance.escalate",
    "consistency": "maintenance.consistency",
    "orphans": "maintenance.orphans",
}


def test_two_beats_fire_each_job_once_a_tick(procs: Processes, pg_url: str) -> None:
    """Ops run two beats: each tick of each job is sent once (redbeat's lock), and each send
    runs once, recorded in job_runs."""
    procs.env.update(
        {f"SCHEDULE_{job.upper()}": str(TICK_S) for job in JOBS},
        SCHEDULE_REPORT_DAILY="",
        SCHEDULE_REPORT_WEEKLY="",
    )
    worker = procs.worker("w", "-c", "2")
    beats = [procs.start(f"beat{n}", "beat") for n in (1, 2)]

    def sends(job: str) -> list[float]:
        return sorted(at for beat in beats for at in beat_sends(beat.log(), job))

    deadline = time.monotonic() + 150  # two beats and a worker importing on a loaded machine
    while min(len(sends(job)) for job in JOBS) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    for beat in beats:
        beat.stop()
    time.sleep(TICK_S)  # the last tick's tasks run
    engine = create_engine(pg_url)
    with Session(engine) as session:
        runs = {r.job: r for r in session.scalars(select(JobRun))}
    engine.dispose()
    events = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    for job, task in JOBS.items():
        sent = sends(job)
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        assert len(sent) >= 4 and min(gaps) > TICK_S / 2, (job, gaps)  # never twice a tick
        received = len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] received", worker.log()))
        assert received == len(sent), (job, received, len(sent))
        # Each run recorded, or said why not (its previous run was still going).
        skipped = sum(1 for e in events if e.get("event") == "job.skipped" and e["job"] == task)
        assert runs[task].runs + skipped == received and runs[task].failures == 0, (job, skipped)


def test_beat_fires_again_after_redis_lost_its_data(procs: Processes, redis_url: str) -> None:
    """A Redis restarted without persistence (here: flushed) holds no schedule: beat writes it
    again and carries on."""
    import redis

    procs.env.update(SCHEDULE_RELAY="2", SCHEDULE_REPORT_DAILY="", SCHEDULE_REPORT_WEEKLY="")
    procs.worker("w", "-c", "1")
    beat = procs.start("beat", "beat")

    def sent() -> int:
        return len(beat_sends(beat.log(), "relay"))

    deadline = time.monotonic() + 120
    while sent() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sent() >= 2, beat.log()[-3000:]
    redis.Redis.from_url(redis_url).flushdb()
    before, deadline = sent(), time.monotonic() + 30
    while sent() < before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sent() >= before + 2, beat.log()[-3000:]
    assert '"beat.schedule_restored"' in beat.log()
