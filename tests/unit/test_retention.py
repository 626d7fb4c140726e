"""maintenance.retention: idempotency keys, finished outbox rows and generated files past their
retention are deleted in batches; pending rows and anything recent stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.clock import now
from db.models import GeneratedFile, Outbox, ProcessedCommand
from workers.maintenance_tasks import prune_retained
from workers.upkeep import retention


def outbox_row(key: str, state: str, age: timedelta) -> Outbox:
    at = now() - age
    return Outbox(
        dedupe_key=key,
        chat_id=1,
        method="sendMessage",
        payload={"chat_id": 1, "text": "x"},
        state=state,
        attempts=1,
        next_attempt_at=at,
        created_at=at,
    )


def test_retention_deletes_only_what_is_past_it(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 3)  # several batches
    old, young = timedelta(days=40), timedelta(days=1)
    with Session(db) as s:
        s.add_all(
            ProcessedCommand(key=f"old{i}", task_name="t", created_at=now() - timedelta(days=8))
            for i in range(7)
        )
        s.add(ProcessedCommand(key="new", task_name="t", created_at=now() - young))
        s.add_all(outbox_row(f"sent{i}", "sent", old) for i in range(4))
        s.add(outbox_row("dead", "dead", old))
        s.add(outbox_row("failed", "failed", old))
        s.add(outbox_row("pending", "pending", old))  # still to send: never pruned
        s.add(outbox_row("recent", "sent", young))
        s.add(GeneratedFile(key="f-old", file_name="a", content=b"x", created_at=now() - old))
        s.add(GeneratedFile(key="f-new", file_name="b", content=b"y", created_at=now() - young))
        s.commit()
    assert prune_retained() == {"idempotency_keys": 7, "outbox": 6, "generated_files": 1}
    with Session(db) as s:
        assert list(s.scalars(select(ProcessedCommand.key))) == ["new"]
        assert sorted(s.scalars(select(Outbox.dedupe_key))) == ["pending", "recent"]
        assert list(s.scalars(select(GeneratedFile.key))) == ["f-new"]
    assert prune_retained() == {}  # nothing left to do


def test_retention_follows_its_settings(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("RETENTION_IDEMPOTENCY", "1h")
    get_settings.cache_clear()
    with Session(db) as s:
        s.add(ProcessedCommand(key="k", task_name="t", created_at=now() - timedelta(hours=2)))
        s.commit()
    assert prune_retained() == {"idempotency_keys": 1}
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(ProcessedCommand)) == 0


def test_old_orphan_backups_are_deleted(db: Engine, tmp_path: object) -> None:
    import os

    from core.settings import get_settings

    folder = get_settings().var_dir / "backups"
    folder.mkdir(parents=True)
    old, new = folder / "orphans-20261001T000000Z.jsonl", folder / "orphans-20261129T000000Z.jsonl"
    for path in (old, new):
        path.write_text("{}\n")
    month_ago = (now() - timedelta(days=31)).timestamp()
    os.utime(old, (month_ago, month_ago))
    assert prune_retained() == {"backups": 1}
    assert not old.exists() and new.exists()
