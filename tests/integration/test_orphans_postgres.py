"""maintenance.orphans on PostgreSQL and real Redis: orphans planted as a partial restore
leaves them (foreign-key triggers off), dialog keys made idle with RESTORE ... IDLETIME."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from core.settings import get_settings
from db.session import configure_engine, dispose_engine, make_engine
from tests.unit.test_orphans import plant, plant_dialogs, run_cycle
from workers.upkeep import orphans

IDLE_S = 3 * 86400  # past the default DIALOG_TTL of 2d


@pytest.fixture
def pg(pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    engine = make_engine(pg_url)
    configure_engine(engine)
    yield engine
    dispose_engine()


def drop_pg(engine: Engine, statements: list[str]) -> None:
    """Delete parents with foreign-key triggers off, as a partial restore would: children stay."""
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for statement in statements:
            conn.exec_driver_sql(statement)


def make_idle(client: Any, keys: set[str]) -> None:
    for key in keys:
        if client.exists(key):
            client.restore(key, 0, client.dump(key), replace=True, idletime=IDLE_S)


def test_postgres_redis_cycle(pg: Engine, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        planted = plant(pg, n=5, big=2500, drop=drop_pg)  # comments: three delete batches
        plant_dialogs(client, planted)
        aged = set(planted.aged)

        def untouched() -> None:  # the dry run reads no key: idle times unchanged
            for key in aged:
                assert client.object("idletime", key) >= IDLE_S

        run_cycle(
            pg,
            planted,
            client,
            restart_idle=aged.clear,
            age=lambda: make_idle(client, aged),
            after_scan=untouched,
        )
        # Recent places idle past the TTL are memory, not a dialog: still there.
        assert client.exists("fsm:1002:1002:recent:data")
    finally:
        client.close()


def test_scan_uses_anti_joins(pg: Engine) -> None:
    """The plan for the big tables is an anti-join (no per-row subplan)."""
    from sqlalchemy import select

    for rule, where in orphans._conditions(orphans.now()):
        if rule.table.name not in ("comments", "request_events", "attachments"):
            continue
        query = select(orphans._pk(rule.table)).where(where)
        compiled = query.compile(pg, compile_kwargs={"literal_binds": True})
        with pg.connect() as conn:
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
        assert "Anti Join" in plan, plan
