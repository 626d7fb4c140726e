"""`zavhoz maintenance …`: the jobs by hand, a summary table, the same lock as beat's runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.clock import now
from db.models import ProcessedCommand, Request, User
from workers.upkeep.jobs import exclusive, last_runs
from zavhoz.cli import main


def test_escalate_and_retention_by_hand(db: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    with Session(db) as s:
        author = User(telegram_id=8301, role="resident")
        s.add(author)
        s.flush()
        s.add(
            Request(author_id=author.id, title="t", description="d", location="Hall",
                    priority="urgent", status="new", created_at=now() - timedelta(hours=5))
        )  # fmt: skip
        s.add(ProcessedCommand(key="old", task_name="t", created_at=now() - timedelta(days=9)))
        s.commit()
    assert main(["maintenance", "escalate"]) == 0
    assert "│ 1 " in capsys.readouterr().out  # one request escalated
    assert main(["maintenance", "retention"]) == 0
    assert "idempotency_keys │ 1" in capsys.readouterr().out
    runs = {r.job: r.counts for r in last_runs()}
    assert runs["maintenance.escalate"]["escalated"] == 1
    assert runs["maintenance.retention"]["idempotency_keys"] == 1


def test_a_job_already_running_is_not_run_twice(
    db: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with exclusive("maintenance.escalate") as mine:
        assert mine
        assert main(["maintenance", "escalate"]) == 3
    assert "another run is going" in capsys.readouterr().err


def test_consistency_and_orphans_by_hand(
    db: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with Session(db) as s:
        s.add(User(telegram_id=None, role="resident", first_name="Left", erased_at=now()))
        s.commit()
    assert main(["maintenance", "consistency"]) == 1  # something is wrong: a probe fails
    assert "erased_identity" in capsys.readouterr().out
    assert main(["maintenance", "consistency", "--repair"]) == 0  # fixed, nothing left
    assert main(["maintenance", "consistency"]) == 0
    capsys.readouterr()
    assert main(["maintenance", "orphans"]) == 0
    assert "(none)" in capsys.readouterr().out
    assert main(["maintenance", "orphans", "--apply"]) == 0
    assert "backup" not in capsys.readouterr().out  # nothing found, nothing backed up
