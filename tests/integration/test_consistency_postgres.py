"""Consistency check and repair on PostgreSQL: the same planted data set as the SQLite tests
(the last transition read from the covering index, the window count, FOR UPDATE), a whole check
read in parts on connections of their own, and repair racing a command that holds a request's
row lock."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from db.models import Request
from tests.unit.test_consistency import (
    assert_check,
    assert_repair,
    assert_repair_is_idempotent,
    plant,
)
from workers.upkeep.consistency import Report, repair

pytestmark = pytest.mark.integration


def test_check_finds_exactly_the_planted_violations(pg: Engine) -> None:
    assert_check(pg, plant(pg))


def test_repair_fixes_what_the_history_decides(pg: Engine) -> None:
    assert_repair(pg, plant(pg))


def test_repair_twice_changes_nothing_the_second_time(pg: Engine) -> None:
    assert_repair_is_idempotent(pg, plant(pg))


def test_repair_waits_for_a_command_and_rechecks(pg: Engine) -> None:
    """A command holding the row lock settles the violation itself meanwhile: repair, blocked
    on the lock, re-checks and leaves the command's change alone."""
    p = plant(pg)
    rid = p.ids["stray"]
    results: list[Report] = []
    with Session(pg) as s:
        request = s.scalars(select(Request).where(Request.id == rid).with_for_update()).one()
        runner = threading.Thread(target=lambda: results.append(repair()))
        runner.start()
        _wait_for_a_blocked_backend(pg)
        request.rating = None  # the command's own fix, committed first
        s.commit()
    runner.join(30)
    assert results, "repair did not finish"
    assert "stray_rating" not in results[0].repaired
    assert results[0].found["stray_rating"] == 1


def _wait_for_a_blocked_backend(engine: Engine) -> None:
    deadline = time.monotonic() + 20
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            conn.rollback()
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("repair never waited for the row lock")


def test_an_incremental_check_on_postgres_finds_what_the_whole_one_does(pg: Engine) -> None:
    from tests.unit.test_consistency import _found
    from workers.upkeep.consistency import check

    plant(pg)
    whole = check()
    again = check(since=whole.next)  # the found ones are looked at again, through the temp table
    assert _found(again.violations) == _found(whole.violations) and again.totals == whole.totals
    assert check(since=again.next).totals == whole.totals  # twice in one connection's life


def test_a_whole_check_read_in_parts_finds_what_one_part_does(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large range is read in parts, each on a connection of its own (forced here on a small
    data set): the same violations, the totals summed over the parts, the list still capped."""
    from tests.unit.test_consistency import _found
    from workers.upkeep import consistency

    p = plant(pg)
    monkeypatch.setattr(consistency, "SPLIT_FROM", 1)
    monkeypatch.setattr(consistency, "RANGE_PARTS", 1)
    one_part = consistency.check()
    monkeypatch.setattr(consistency, "RANGE_PARTS", 3)
    threads: set[str] = set()
    read_part = consistency._read_part

    def spy(*args: object, **kwargs: object) -> object:
        threads.add(threading.current_thread().name)
        return read_part(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(consistency, "_read_part", spy)
    parts = consistency.check()
    assert len(threads) == 3 and all(t.startswith("consistency") for t in threads)
    assert _found(parts.violations) == _found(one_part.violations) == p.expected
    assert parts.totals == one_part.totals
    capped = consistency.check(limit_per_kind=1)
    assert capped.totals == one_part.totals
    assert all(sum(v.kind == k for v in capped.violations) == 1 for k in capped.totals)
