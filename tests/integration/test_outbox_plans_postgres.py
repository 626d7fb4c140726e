"""A broadcast's drain right after its fan-out, on PostgreSQL: before the fan-out the outbox's
statistics say no row is pending (autovacuum analyzes a minute later). The claim of the next
row must not join and sort every pending row of the broadcast for each message
(bench/isolation.py found 35-72 ms and ~50,000 buffers a message): the fan-out analyzes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from db.models import Broadcast, Outbox
from workers import outbox
from workers.broadcasts import engine

pytestmark = pytest.mark.integration

FAN_OUT = 10_000
SEED = f"""
INSERT INTO users (telegram_id, role, language, reachable)
SELECT 500000 + g, 'resident', 'en', true FROM generate_series(1, {FAN_OUT}) g;
INSERT INTO outbox (dedupe_key, chat_id, method, payload, state, attempts, next_attempt_at)
SELECT 'old:' || g, 500000 + g, 'sendMessage', '{{}}', 'sent', 1, now()
FROM generate_series(1, 2000) g;
ANALYZE outbox; ANALYZE users
"""


def claim_plan(pg: Engine, batch: int) -> str:
    statements: list[tuple[str, Any]] = []

    def catch(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FOR UPDATE" in statement:
            statements.append((statement, parameters))

    event.listen(pg, "before_cursor_execute", catch)
    try:
        row = outbox.claim(Outbox.batch_id == batch)
    finally:
        event.remove(pg, "before_cursor_execute", catch)
    assert row is not None and row.batch_id == batch
    [(statement, parameters)] = statements
    with pg.connect() as conn:
        found = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
        return "\n".join(r[0] for r in found)


def test_the_next_row_of_a_fresh_broadcast_is_claimed_without_a_sort(pg: Engine) -> None:
    with pg.begin() as conn:
        for statement in SEED.split(";"):
            conn.execute(text(statement))
    with Session(pg) as session:
        broadcast = Broadcast(audience="residents", text="x", state="sending")
        session.add(broadcast)
        session.flush()
        assert engine.fan_out(session, broadcast) == FAN_OUT
        session.commit()
        batch = broadcast.id
    plan = claim_plan(pg, batch)
    assert "Sort" not in plan, plan
    buffers = int(re.search(r"Buffers: shared hit=(\d+)", plan).group(1))  # type: ignore[union-attr]
    assert buffers < 500, plan  # a few index pages, not the whole broadcast
