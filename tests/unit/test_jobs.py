"""Scheduled jobs run one at a time per job (a second run exits at once and says so), and each
job's last run is recorded."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine

from workers.upkeep.jobs import SKIPPED, last_runs, run_job


def test_a_second_run_while_one_is_going_exits_at_once(db: Engine) -> None:
    inside, release = threading.Event(), threading.Event()
    results: list[object] = []

    def slow() -> dict[str, int]:
        inside.set()
        release.wait(10)
        return {"done": 3}

    first = threading.Thread(target=lambda: results.append(run_job("maintenance.x", slow)))
    first.start()
    assert inside.wait(10)
    assert run_job("maintenance.x", lambda: {"done": 99}) == SKIPPED  # not run, not waited
    assert run_job("maintenance.y", lambda: {"other": 1}) == {"other": 1}  # other jobs run
    release.set()
    first.join()
    assert results == [{"done": 3}]
    assert run_job("maintenance.x", lambda: {"done": 1}) == {"done": 1}  # free again
    runs = {r.job: r for r in last_runs()}
    assert (runs["maintenance.x"].runs, runs["maintenance.x"].counts) == (2, {"done": 1})
    assert runs["maintenance.x"].outcome == "ok" and runs["maintenance.x"].failures == 0


def test_a_failed_run_is_recorded_and_raised(db: Engine) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        run_job("maintenance.z", broken)
    (run,) = last_runs()
    assert (run.outcome, run.error, run.failures, run.runs) == (
        "failed",
        "RuntimeError: disk full",
        1,
        1,
    )
    assert run_job("maintenance.z", lambda: {}) == {}  # the lock was released
