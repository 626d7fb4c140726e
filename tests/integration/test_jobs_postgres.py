"""On PostgreSQL a job's lock is an advisory lock: a second run on another connection (another
worker or host) exits at once; a run's death frees it."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

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
