"""Orphans: rows and dialog keys whose owner is gone, reported, backed up, deleted, restorable.

Where they come from: SQLite without `PRAGMA foreign_keys=ON` (db/session.py turns it on, but a
file touched by another tool, or written before that, may not have had it), a partial restore
with triggers off (`session_replication_role = replica` on PostgreSQL), erasures that ran
half-way, dialogs abandoned in the bot. What counts (each row in one kind only):

- comments, attachments and history events whose request is missing (their FK cascades);
- outbox rows whose recipient user is missing, pending outbox rows of erased users, outbox
  rows whose broadcast is missing (that FK cascades too);
- broadcasts left in draft for more than a day (and without outbox rows, which deleting them
  would cascade to without a backup);
- dialog keys (aiogram FSM, `fsm:<chat>[:<thread>]:<user>:<destiny>[:<field>]`) of Telegram users
  who are not any user's telegram_id (erased users' ids are NULL, so theirs count), and in Redis
  the default dialog's state, draft and applied-updates keys idle for longer than DIALOG_TTL
  (`OBJECT IDLETIME`, which reading them for the check does not reset). The SQLite file of
  embedded defaults keeps no times: there only keys of missing users are orphans.

Found by anti-joins (`NOT EXISTS`) streamed as ids, so a scan of millions of rows keeps a few
thousand ids in memory. `apply` first writes every row it will delete to a JSON-lines backup
(synced to disk before anything is deleted), then deletes what the backup lists in batches of
BATCH, each its own transaction, re-checking the orphan condition in the DELETE itself: a row
whose parent came back meanwhile stays, and nothing is deleted that the backup does not hold.
Dialog keys are deleted only while unchanged since the backup read them (WATCH in Redis).
"""

from __future__ import annotations

import base64
import heapq
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import redis
from sqlalchemy import (
    ColumnElement,
    Date,
    DateTime,
    LargeBinary,
    Table,
    delete,
    exists,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import Column

from core.clock import as_utc, now
from core.logging import get_logger
from core.schedules import parse_duration
from core.settings import get_settings
from core.states import BroadcastState, OutboxState
from db.models import Base
from db.session import session_scope

log = get_logger(__name__)

BATCH = 1000
SAMPLE = 10
DRAFT_MAX_AGE = timedelta(days=1)
DIALOG_KIND = "dialog_keys"
REDIS_TABLE = "redis"
SQLITE_TABLE = "dialogs_sqlite"
DIALOG_PREFIX = "fsm"  # aiogram's DefaultKeyBuilder prefix, as bot/app.py builds it
# Redis fields the bot writes per dialog. "lock" keys live seconds and are held by a live bot:
# never ours to touch.
_REDIS_FIELDS = frozenset({"state", "data", "applied"})
# Only the dialog itself expires when idle; other destinies ("recent": the user's recent
# places) are memory meant to outlast dialogs, removed only with their user.
_IDLE_DESTINY = "default"

_T = Base.metadata.tables
_comments, _attachments, _events = _T["comments"], _T["attachments"], _T["request_events"]
_outbox, _users = _T["outbox"], _T["users"]
_requests, _broadcasts = _T["requests"], _T["broadcasts"]

# A SET NULL reference that still owns its row: an outbox row is a message to that user.
_OWNER_REFS = frozenset({("outbox", "user_id")})


@dataclass(frozen=True)
class Found:
    kind: str
    count: int
    sample: list[str]  # up to SAMPLE ids or keys, smallest first, as text


@dataclass(frozen=True)
class _Rule:
    kind: str
    table: Table
    own: Callable[[datetime], ColumnElement[bool]]


def _missing(parent: Table, column: Column[Any]) -> ColumnElement[bool]:
    return ~exists().where(parent.c.id == column)


_RULES = (
    _Rule(
        "comments_without_request",
        _comments,
        lambda at: _missing(_requests, _comments.c.request_id),
    ),
    _Rule(
        "attachments_without_request",
        _attachments,
        lambda at: _missing(_requests, _attachments.c.request_id),
    ),
    _Rule(
        "events_without_request",
        _events,
        lambda at: _missing(_requests, _events.c.request_id),
    ),
    _Rule(
        "outbox_without_user",
        _outbox,
        lambda at: _outbox.c.user_id.is_not(None) & _missing(_users, _outbox.c.user_id),
    ),
    _Rule(
        "outbox_of_erased_users",
        _outbox,
        lambda at: (
            (_outbox.c.state == OutboxState.PENDING.value)
            & exists().where(_users.c.id == _outbox.c.user_id, _users.c.erased_at.is_not(None))
        ),
    ),
    _Rule(
        "outbox_without_broadcast",
        _outbox,
        lambda at: _outbox.c.batch_id.is_not(None) & _missing(_broadcasts, _outbox.c.batch_id),
    ),
    # Last: a parent of outbox rows. One with rows is left alone (deleting it would cascade to
    # rows that are not in the backup); it is not a draft's normal state anyway.
    _Rule(
        "stale_draft_broadcasts",
        _broadcasts,
        lambda at: (
            (_broadcasts.c.state == BroadcastState.DRAFT.value)
            & (_broadcasts.c.created_at < at - DRAFT_MAX_AGE)
            & ~exists().where(_outbox.c.batch_id == _broadcasts.c.id)
        ),
    ),
)


def _conditions(at: datetime) -> list[tuple[_Rule, ColumnElement[bool]]]:
    """Each rule's condition minus the earlier rules' on the same table: kinds are disjoint, so
    counts add up and no row is backed up twice. (No condition can be NULL, so NOT is exact.)"""
    earlier: dict[str, list[ColumnElement[bool]]] = {}
    out = []
    for rule in _RULES:
        own = rule.own(at)
        where = own
        for previous in earlier.get(rule.table.name, []):
            where = where & ~previous
        earlier.setdefault(rule.table.name, []).append(own)
        out.append((rule, where))
    return out


def _pk(table: Table) -> Column[Any]:
    (column,) = table.primary_key.columns
    return column


# --- scan ------------------------------------------------------------------------------------


def scan(*, at: datetime | None = None) -> list[Found]:
    """What `apply` would delete, by kind (kinds with none are left out). Changes nothing."""
    at = at or now()
    found: list[Found] = []
    for rule, where in _conditions(at):
        with session_scope() as session:
            ids = session.execute(
                select(_pk(rule.table)).where(where), execution_options={"yield_per": BATCH}
            ).scalars()
            count, sample = _tally(ids)
        if count:
            found.append(Found(rule.kind, count, sample))
    count, sample = _tally(key for _, key, _ in _dialog_orphans(at, read=False))
    if count:
        found.append(Found(DIALOG_KIND, count, sample))
    log.info("orphans.scanned", **{f.kind: f.count for f in found})
    return found


def _tally(items: Iterable[Any]) -> tuple[int, list[str]]:
    """How many, and the SAMPLE smallest, without keeping more than SAMPLE of them."""
    count = 0
    heap: list[tuple[_Desc, Any]] = []  # the smallest so far, largest on top
    for item in items:
        count += 1
        entry = (_Desc(item), item)
        if len(heap) < SAMPLE:
            heapq.heappush(heap, entry)
        elif item < heap[0][1]:
            heapq.heapreplace(heap, entry)
    return count, [str(item) for _, item in sorted(heap, key=lambda e: e[1])]


class _Desc:
    """Reverses the order of a value, so heapq's min-heap keeps the largest of the smallest."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return bool(self.value > other.value)


# --- apply -----------------------------------------------------------------------------------


def apply(
    *,
    backup_dir: Path | None = None,
    progress: Callable[[str, int], None] | None = None,
    at: datetime | None = None,
    budget_s: float | None = None,
) -> tuple[Path | None, list[Found]]:
    """Back up, then delete; returns the backup file (None when nothing was found) and what was
    deleted. backup_dir defaults to VAR_DIR/backups. progress(kind, n) is called after each
    batch with the rows that batch deleted. With budget_s, stops backing up at half of it and
    deleting at all of it: the rest is left for the next run (rows backed up but not deleted
    are skipped by a restore, as present)."""
    at = at or now()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    halfway = None if budget_s is None else time.monotonic() + budget_s / 2
    backup_dir = backup_dir or get_settings().var_dir / "backups"
    backup_dir.mkdir(parents=True, exist_ok=True)
    path = _backup_path(backup_dir, at)
    written = _write_backup(path, at, halfway)
    if not written:
        return None, []
    log.info("orphans.backed_up", path=str(path), rows=written)
    deleted = _delete_backed_up(path, at, deadline, progress)
    log.info("orphans.deleted", **{f.kind: f.count for f in deleted})
    return path, deleted


def _backup_path(backup_dir: Path, at: datetime) -> Path:
    stamp = as_utc(at).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    path, n = backup_dir / f"orphans-{stamp}.jsonl", 1
    while path.exists() or path.with_suffix(".partial").exists():
        n += 1
        path = backup_dir / f"orphans-{stamp}-{n}.jsonl"
    return path


def _write_backup(path: Path, at: datetime, halfway: float | None) -> int:
    """Every row to delete, one JSON line each, written as read; renamed into place and synced
    once complete, so a file without `.partial` is a whole backup. Returns the lines written."""
    partial = path.with_suffix(".partial")
    written = 0
    with partial.open("x", encoding="utf-8") as out:
        for rule, where in _conditions(at):
            if halfway is not None and time.monotonic() > halfway:
                break
            with session_scope() as session:
                # No ORDER BY: it turns PostgreSQL's hash anti-join into a slower index walk.
                rows = session.execute(
                    select(rule.table).where(where), execution_options={"yield_per": BATCH}
                )
                key = _pk(rule.table).name
                for row in rows:
                    values = dict(row._mapping)
                    _write_line(out, rule.kind, rule.table.name, values[key], values)
                    written += 1
        if halfway is None or time.monotonic() <= halfway:
            for table, key, content in _dialog_orphans(at, read=True):
                _write_line(out, DIALOG_KIND, table, key, content)
                written += 1
        out.flush()
        os.fsync(out.fileno())
    if not written:
        partial.unlink()
        return 0
    partial.rename(path)
    _fsync_dir(path.parent)
    return written


def _write_line(out: IO[str], kind: str, table: str, key: Any, row: dict[str, Any]) -> None:
    line = {"table": table, "key": key, "row": row, "kind": kind}
    out.write(json.dumps(line, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot back up a {type(value).__name__}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _backup_batches(path: Path) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(kind, table, lines) in file order, at most BATCH lines each."""
    batch: list[dict[str, Any]] = []
    current: tuple[str, str] | None = None
    with path.open(encoding="utf-8") as lines:
        for text in lines:
            if not text.strip():
                continue
            line = json.loads(text)
            head = (str(line.get("kind", "")), str(line["table"]))
            if batch and (head != current or len(batch) >= BATCH):
                assert current is not None
                yield current[0], current[1], batch
                batch = []
            current = head
            batch.append(line)
    if batch and current is not None:
        yield current[0], current[1], batch


def _delete_backed_up(
    path: Path,
    at: datetime,
    deadline: float | None,
    progress: Callable[[str, int], None] | None,
) -> list[Found]:
    wheres = {rule.kind: (rule.table, where) for rule, where in _conditions(at)}
    counts: dict[str, int] = {}
    samples: dict[str, list[Any]] = {}
    client = _redis() if get_settings().redis_url else None
    try:
        for kind, table, lines in _backup_batches(path):
            if deadline is not None and time.monotonic() > deadline:
                log.info("orphans.budget_spent")
                break
            if table == REDIS_TABLE:
                gone = [] if client is None else _delete_redis(client, lines)
            elif table == SQLITE_TABLE:
                gone = _delete_sqlite(lines)
            else:
                model, where = wheres[kind]
                pk = _pk(model)
                with session_scope() as session:
                    result = session.execute(
                        delete(model)
                        .where(pk.in_([line["key"] for line in lines]), where)
                        .returning(pk)
                    )
                    gone = list(result.scalars())
            counts[kind] = counts.get(kind, 0) + len(gone)
            samples[kind] = heapq.nsmallest(SAMPLE, [*samples.get(kind, []), *gone])
            if progress is not None:
                progress(kind, len(gone))
    finally:
        if client is not None:
            client.close()
    return [
        Found(kind, n, [str(item) for item in samples[kind]]) for kind, n in counts.items() if n
    ]


# --- dialog keys -----------------------------------------------------------------------------


def _redis() -> redis.Redis:
    """The Redis holding the bot's dialogs (tests patch this)."""
    url = get_settings().redis_url
    assert url is not None
    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)


def _sqlite_path() -> Path:
    return get_settings().var_dir / "dialogs.sqlite3"


def _parse_user(key: str, *, with_field: bool) -> tuple[int, str, str | None] | None:
    """(Telegram user id, destiny, field) of a dialog key, or None if it is not one. The user
    id comes right before the destiny whichever optional parts (bot, thread) the key has."""
    parts = key.split(":")
    tail = 3 if with_field else 2
    if len(parts) < tail + 2 or parts[0] != DIALOG_PREFIX:
        return None
    try:
        user = int(parts[-tail])
    except ValueError:
        return None
    return user, parts[-tail + 1], parts[-1] if with_field else None


def _existing_telegram_ids(ids: set[int]) -> set[int]:
    if not ids:
        return set()
    with session_scope() as session:
        return set(
            session.scalars(select(_users.c.telegram_id).where(_users.c.telegram_id.in_(ids)))
        )


def _dialog_orphans(at: datetime, *, read: bool) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(table, key, row) of each orphaned dialog key; the row (its content) only when `read`:
    reading a Redis key resets its idle time, so a dry run must not."""
    del at  # idle times are Redis's own clock
    if get_settings().redis_url:
        ttl_s = parse_duration(get_settings().dialog_ttl).total_seconds()
        client = _redis()
        try:
            for keys in _chunks(_scan_keys(client), BATCH):
                for key in _judge_redis(client, keys, ttl_s):
                    if not read:
                        yield REDIS_TABLE, key, {}
                        continue
                    row = _read_redis(client, key)
                    if row is not None:  # gone meanwhile
                        yield REDIS_TABLE, key, row
        finally:
            client.close()
        return
    path = _sqlite_path()
    if not path.exists():
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        cursor = conn.execute("SELECT key, state, data FROM dialogs ORDER BY key")
        while chunk := cursor.fetchmany(BATCH):
            parsed = {k: _parse_user(k, with_field=False) for k, _, _ in chunk}
            known = _existing_telegram_ids({p[0] for p in parsed.values() if p is not None})
            for key, state, data in chunk:
                p = parsed[key]
                if p is not None and p[0] not in known:
                    yield SQLITE_TABLE, key, {"state": state, "data": data}
    finally:
        conn.close()


def _scan_keys(client: redis.Redis) -> Iterator[str]:
    for raw in client.scan_iter(match=f"{DIALOG_PREFIX}:*", count=BATCH):
        yield raw.decode() if isinstance(raw, bytes) else str(raw)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _judge_redis(client: redis.Redis, keys: list[str], ttl_s: float) -> list[str]:
    parsed = {k: _parse_user(k, with_field=True) for k in dict.fromkeys(keys)}
    ours = {k: p for k, p in parsed.items() if p is not None and p[2] in _REDIS_FIELDS}
    known = _existing_telegram_ids({p[0] for p in ours.values()})
    orphans = {k for k, p in ours.items() if p[0] not in known}
    maybe_idle = [k for k, p in ours.items() if k not in orphans and p[1] == _IDLE_DESTINY]
    for key, idle in zip(maybe_idle, _idle_seconds(client, maybe_idle), strict=True):
        if idle is not None and idle > ttl_s:
            orphans.add(key)
    return sorted(orphans)


_idle_warned: list[bool] = []


def _idle_seconds(client: redis.Redis, keys: list[str]) -> list[int | None]:
    """Seconds since each key was last read or written (None: gone, or not known: an LFU
    eviction policy keeps no idle times). OBJECT does not count as an access."""
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.object("idletime", key)
    out: list[int | None] = []
    for result in pipe.execute(raise_on_error=False):
        if isinstance(result, Exception):
            if not _idle_warned:
                _idle_warned.append(True)
                log.warning("orphans.idle_time_unknown", error=type(result).__name__)
            out.append(None)
        else:
            out.append(None if result is None else int(result))
    return out


def _text(raw: Any) -> Any:
    """Redis bytes as JSON: text when UTF-8, else {"b64": ...}."""
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(raw).decode("ascii")}
    return raw


def _raw(value: Any) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return str(value).encode("utf-8")


def _read_redis(client: redis.Redis, key: str) -> dict[str, Any] | None:
    """The key's type, value and remaining time to live (ms, None: none), or None if gone."""
    kind = _text(client.type(key))
    value: Any
    if kind == "string":
        value = _text(client.get(key))
    elif kind == "list":
        value = [_text(v) for v in client.lrange(key, 0, -1)]
    elif kind == "hash":
        value = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
    elif kind == "set":
        value = sorted(_text(v) for v in client.smembers(key))
    elif kind == "zset":
        pairs: Any = client.zrange(key, 0, -1, withscores=True)
        value = [[_text(m), s] for m, s in pairs]
    else:  # "none" (gone meanwhile) or a type the bot never writes
        return None
    pttl = int(client.pttl(key))
    return {"type": kind, "value": value, "pttl": pttl if pttl > 0 else None}


def _delete_redis(client: redis.Redis, lines: list[dict[str, Any]]) -> list[str]:
    """Delete each key only if it still holds what was backed up (a user who came back since
    wrote to it): WATCH, compare, MULTI/DEL; a write in between aborts the DEL."""
    gone = []
    for line in lines:
        key, row = str(line["key"]), line["row"]
        with client.pipeline() as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                current = _read_redis(pipe, key)
                if current is None or (current["type"], current["value"]) != (
                    row["type"],
                    row["value"],
                ):
                    continue
                pipe.multi()
                pipe.delete(key)
                if pipe.execute()[0]:
                    gone.append(key)
            except redis.WatchError:
                continue
    return gone


def _delete_sqlite(lines: list[dict[str, Any]]) -> list[str]:
    path = _sqlite_path()
    if not path.exists():
        return []
    conn = sqlite3.connect(path, isolation_level=None)
    gone = []
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("BEGIN IMMEDIATE")
        for line in lines:
            row = line["row"]
            # Unchanged since the backup: a dialog written meanwhile is not deleted.
            cursor = conn.execute(
                "DELETE FROM dialogs WHERE key = ? AND state IS ? AND data IS ?",
                (line["key"], row.get("state"), row.get("data")),
            )
            if cursor.rowcount:
                gone.append(str(line["key"]))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return gone


# --- restore ---------------------------------------------------------------------------------


def restore(path: Path) -> dict[str, int]:
    """Put a backup's rows back where their parents exist: table -> rows put back, plus
    "skipped" (parent still missing, or the row or key is there already). Parents go first
    (one pass over the file per table), each batch of BATCH its own transaction. A missing
    SET NULL reference other than an owner (a comment's author) is restored as NULL, as the
    foreign key would have left it. Running it twice puts nothing back twice."""
    tables: list[str] = []
    with path.open(encoding="utf-8") as lines:
        for text in lines:
            if text.strip():
                name = str(json.loads(text)["table"])
                if name not in tables:
                    tables.append(name)
    rank = {t.name: n for n, t in enumerate(Base.metadata.sorted_tables)}
    ordered = sorted(tables, key=lambda name: rank.get(name, len(rank)))
    counts = {"skipped": 0}
    for name in ordered:
        for _, table, batch in _backup_batches(path):
            if table != name:
                continue
            if table == REDIS_TABLE:
                put, skipped = _restore_redis(batch)
            elif table == SQLITE_TABLE:
                put, skipped = _restore_sqlite(batch)
            elif table in Base.metadata.tables:
                with session_scope() as session:
                    put, skipped = _restore_rows(session, Base.metadata.tables[table], batch)
            else:
                put, skipped = 0, len(batch)
            if put:
                counts[table] = counts.get(table, 0) + put
            counts["skipped"] += skipped
    log.info("orphans.restored", **counts)
    return counts


def _from_json(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in row.items():
        column = table.c.get(name)
        if column is None:  # dropped from the schema since
            continue
        if value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(column.type, Date):
            value = date.fromisoformat(value)
        elif value is not None and isinstance(column.type, LargeBinary):
            value = base64.b64decode(value)
        out[name] = value
    return out


def _restore_rows(session: Session, table: Table, lines: list[dict[str, Any]]) -> tuple[int, int]:
    pk = _pk(table)
    rows = [_from_json(table, line["row"]) for line in lines]
    present = set(session.scalars(select(pk).where(pk.in_([r[pk.name] for r in rows]))))
    keep = [r for r in rows if r[pk.name] not in present]
    for fk in table.foreign_keys:
        column, parent = fk.parent, fk.column
        wanted = {r[column.name] for r in keep if r.get(column.name) is not None}
        if not wanted:
            continue
        there = set(session.scalars(select(parent).where(parent.in_(wanted))))
        nullable = fk.ondelete == "SET NULL" and (table.name, column.name) not in _OWNER_REFS
        for r in keep:
            if r.get(column.name) is not None and r[column.name] not in there:
                if nullable:
                    r[column.name] = None
                else:
                    r["__skip__"] = True
    keep = [r for r in keep if not r.pop("__skip__", False)]
    if not keep:
        return 0, len(rows)
    try:
        with session.begin_nested():
            session.execute(insert(table), keep)
        put = len(keep)
    except IntegrityError:
        # Another unique value (an outbox dedupe key) was taken meanwhile: row by row.
        put = 0
        for r in keep:
            try:
                with session.begin_nested():
                    session.execute(insert(table), [r])
                put += 1
            except IntegrityError:
                pass
    return put, len(rows) - put


def _restorable_users(lines: list[dict[str, Any]], *, with_field: bool) -> set[int]:
    ids = set()
    for line in lines:
        parsed = _parse_user(str(line["key"]), with_field=with_field)
        if parsed is not None:
            ids.add(parsed[0])
    return _existing_telegram_ids(ids)


def _restore_redis(lines: list[dict[str, Any]]) -> tuple[int, int]:
    if not get_settings().redis_url:
        log.warning("orphans.restore_without_redis", keys=len(lines))
        return 0, len(lines)
    known = _restorable_users(lines, with_field=True)
    client = _redis()
    put = 0
    try:
        for line in lines:
            key, row = str(line["key"]), line["row"]
            parsed = _parse_user(key, with_field=True)
            if parsed is None or parsed[0] not in known:
                continue
            if _write_redis(client, key, row):
                put += 1
    finally:
        client.close()
    return put, len(lines) - put


def _write_redis(client: redis.Redis, key: str, row: dict[str, Any]) -> bool:
    """Recreate a key unless it exists (a newer dialog wins over a restored one)."""
    kind, value, pttl = row["type"], row["value"], row.get("pttl")
    if kind == "string":
        return bool(client.set(key, _raw(value), nx=True, px=pttl or None))
    with client.pipeline() as pipe:
        try:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            if pipe.exists(key):
                return False
            pipe.multi()
            if kind == "list":
                pipe.rpush(key, *[_raw(v) for v in value])
            elif kind == "hash":
                pipe.hset(key, mapping={_raw(k): _raw(v) for k, v in value.items()})
            elif kind == "set":
                pipe.sadd(key, *[_raw(v) for v in value])
            elif kind == "zset":
                pipe.zadd(key, {_raw(m): float(s) for m, s in value})
            else:
                return False
            if pttl:
                pipe.pexpire(key, int(pttl))
            pipe.execute()
            return True
        except redis.WatchError:
            return False


def _restore_sqlite(lines: list[dict[str, Any]]) -> tuple[int, int]:
    known = _restorable_users(lines, with_field=False)
    path = _sqlite_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    put = 0
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        # The bot's schema (bot/dialogs/sqlite_storage.py), in case the file is gone too.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS dialogs"
            " (key TEXT PRIMARY KEY, state TEXT, data TEXT NOT NULL DEFAULT '{}')"
        )
        conn.execute("BEGIN IMMEDIATE")
        for line in lines:
            parsed = _parse_user(str(line["key"]), with_field=False)
            if parsed is None or parsed[0] not in known:
                continue
            row = line["row"]
            cursor = conn.execute(
                "INSERT OR IGNORE INTO dialogs (key, state, data) VALUES (?, ?, ?)",
                (line["key"], row.get("state"), row.get("data") or "{}"),
            )
            put += cursor.rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return put, len(lines) - put
