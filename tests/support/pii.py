"""The PII scan: every column of every table of the live schema (reflected, so a table added
later is covered without touching the test), and the Redis keyspace, searched for a user's
identifiers and distinctive strings."""

from __future__ import annotations

import json
from typing import Any

import redis
from sqlalchemy import Engine, MetaData, select


def scan_database(engine: Engine, needles: list[str], telegram_id: int) -> list[str]:
    """Where any needle occurs (case-insensitively, as a substring of any text, JSON or binary
    value), and any integer column holding `telegram_id`: "table.column = value" lines."""
    meta = MetaData()
    meta.reflect(engine)
    folded = [n.casefold() for n in needles]
    found: list[str] = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    if _hit(value, folded, telegram_id):
                        found.append(f"{table.name}.{column.name} = {str(value)[:120]!r}")
    return found


def _hit(value: Any, folded: list[str], telegram_id: int) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == telegram_id
    if isinstance(value, bytes | memoryview):
        text = bytes(value).decode("utf-8", errors="replace")
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = text.casefold()
    return any(n in text for n in folded) or str(telegram_id) in text


def scan_redis(client: redis.Redis, needles: list[str], telegram_id: int) -> list[str]:
    """Keys whose name or value (strings, hashes, lists, sets) holds a needle or the id."""
    folded = [n.casefold() for n in needles]
    found: list[str] = []
    for raw in client.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        kind = client.type(raw).decode()
        if kind == "string":
            values = [client.get(raw) or b""]
        elif kind == "hash":
            values = [k + b"=" + v for k, v in client.hgetall(raw).items()]
        elif kind == "list":
            values = list(client.lrange(raw, 0, -1))
        elif kind in ("set", "zset"):
            values = list(client.smembers(raw) if kind == "set" else client.zrange(raw, 0, -1))
        else:
            values = []
        for value in [key.encode(), *values]:
            if _hit(value, folded, telegram_id):
                found.append(f"redis {key} ({kind})")
                break
    return found
