"""Upkeep on a large site: the SLA escalation sweep, the consistency check and repair, the
orphan scan and apply, and retention, timed with each one's peak RSS, against the targets of
under 2 s each (repair and apply of the planted sets under 10 s) and under 300 MB.

    .venv/bin/python -m bench.maintenance [--reseed]

The data set is the reports benchmark's (bench/report_seed.py: 1,000,000 requests, 100,000
users, ~4.15M history events, the seeding instant as its anchor) plus 2,000,000 comments added
here with COPY. It lives in zavhoz_bench_maintenance_base, made once (by copying
zavhoz_bench_reports with CREATE DATABASE ... TEMPLATE when that database holds the same data
set and nobody is connected to it, else by running the seeder) and marked with a comment on
the database; --reseed makes it again. zavhoz_bench_reports itself is never written to.

Each run copies the base into zavhoz_bench_maintenance (CREATE DATABASE ... TEMPLATE ...
STRATEGY FILE_COPY, about 2 s: the run's changes, escalations included, never reach the base)
and plants, with COPY, in one transaction (foreign keys bypassed with SET LOCAL
session_replication_role = replica only for the orphans): 1,000 violations of each consistency
kind, 1,000 orphans of each kind (dialog keys in VAR_DIR/dialogs.sqlite3), 500 overdue open
requests and, for retention, 1,000 of each kind past its retention; with each, rows that look
alike but are fine (a live lease, a fresh draft, ...), which must not be found. What the
modules find before planting (measured with their own dry queries) is the baseline: the
expected figure is baseline + planted.

The operations run one after another, each in a fresh (spawned) process, so each one's peak RSS
(ru_maxrss) is its own and includes the project's imports; the time is the call alone: the
upkeep modules are imported and one `SELECT 1` has opened the connection before the clock
starts ("in SQL" is the time spent in the driver's execute: a streamed query's fetches are not
in it). The escalation runs at the data set's anchor, so the
seeded backlog is the same on every run. The nightly check is the scheduled job's: what changed
since the cursor left before planting, plus its sweep's slice (a seventh of all requests); the
whole check is `--full`, by hand. DATABASE_URL overrides the run database's URL.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import resource
import shlex
import sqlite3
import sys
import tempfile
import time
from array import array
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.reports import (
    conninfo,
    database_name,
    read_marker,
    render_table,
)

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_maintenance"
SOURCE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_reports"
VERSION = 2  # of the comments, closing and plants: a base of another version is made again
COMMENTS = 2_000_000
PLANT = 1_000  # of each consistency and orphan kind, and of each retention kind
OVERDUE = 500
DECOYS = 100  # look-alikes of each kind that must not be found
TARGET_S = 2.0
TARGET_BULK_S = 10.0  # repair and apply of the planted sets
TARGET_RSS_MB = 300.0
MISSING_ID = 5_000_000  # ids above this name no request, user or broadcast
FAR_TELEGRAM_ID = 900_000_000  # Telegram ids no user has

COMMENT_TEXTS = (
    "On my way.",
    "Parts ordered, back on Thursday.",
    "Still leaking, please come back.",
    "Could you call before coming?",
    "Done, please check.",
    "Thank you!",
    "The neighbour downstairs has it too.",
    "Access to the basement is locked, who has the key?",
    "Photo of the meter attached.",
    "Will be home after 18:00.",
)


# --- The base data set ---------------------------------------------------------------------------


def url_for(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def admin_execute(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(conninfo(url, "postgres"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def exists(url: str) -> bool:
    import psycopg

    with psycopg.connect(conninfo(url, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database_name(url),)
        ).fetchone()
    return row is not None


def copy_database(source: str, target: str, *, tries: int = 1) -> bool:
    """CREATE DATABASE target TEMPLATE source; False when the source stayed busy (PostgreSQL
    refuses to copy a database anyone is connected to)."""
    import psycopg

    for attempt in range(tries):
        try:
            admin_execute(
                target,
                f'CREATE DATABASE "{database_name(target)}" TEMPLATE "{database_name(source)}"'
                " STRATEGY FILE_COPY",
            )
            return True
        except psycopg.errors.ObjectInUse:
            if attempt + 1 < tries:
                time.sleep(2)
    return False


def prepare_base(base: str, reseed: bool) -> dict[str, Any]:
    """The base data set (seeded unless there already), its schema at head."""
    from zoneinfo import ZoneInfo

    from bench.report_seed import VERSION as SEED_VERSION
    from bench.report_seed import Shape, seed
    from bench.reports import create_database, write_marker
    from core.settings import get_settings
    from db import migrate

    wanted = {"version": SEED_VERSION, "shape": Shape().__dict__}
    marker = None if reseed or not exists(base) else read_marker(base)
    if (
        marker is not None
        and all(marker.get(k) == v for k, v in wanted.items())
        and marker.get("maintenance", {}).get("version") == VERSION
    ):
        print(
            f"data set: found in {database_name(base)} ({marker['counts']}, comments "
            f"{marker['maintenance']['comments']:,}, anchor {marker['anchor']}); --reseed to "
            "make it again"
        )
        migrate.upgrade(base)
        return marker
    admin_execute(base, f'DROP DATABASE IF EXISTS "{database_name(base)}" WITH (FORCE)')
    source = read_marker(SOURCE_URL) if exists(SOURCE_URL) else None
    t0 = time.monotonic()
    if (
        source is not None
        and all(source.get(k) == v for k, v in wanted.items())
        and copy_database(SOURCE_URL, base, tries=5)
    ):
        marker = source
        print(
            f"data set: {database_name(base)} copied from {database_name(SOURCE_URL)} in "
            f"{time.monotonic() - t0:.1f} s (anchor {marker['anchor']})",
            flush=True,
        )
        migrate.upgrade(base)
    else:
        print(f"data set: seeding {database_name(base)} with bench/report_seed.py", flush=True)
        create_database(base, drop=True)
        migrate.upgrade(base)
        marker = seed(
            conninfo(base),
            Shape(),
            ZoneInfo(get_settings().timezone),
            lambda line: print(line, flush=True),
        )
    t0 = time.monotonic()
    seed_comments(conninfo(base), marker, COMMENTS)
    closed = close_past_window(conninfo(base))
    print(f"data set: {closed:,} done requests past the reopen window closed", flush=True)
    marker = {
        **marker,
        "maintenance": {
            "version": VERSION,
            "comments": COMMENTS,
            "comments_s": round(time.monotonic() - t0, 1),
        },
    }
    write_marker(base, marker)
    return marker


def nightly_check_ran(info: str) -> None:
    """The consistency job's cursor as a whole check on the base, just before the problems are
    planted, leaves it (the base is consistent: the baseline check finds nothing)."""
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(info) as conn:
        rid, eid, at = conn.execute(
            "SELECT (SELECT max(id) FROM requests), (SELECT max(id) FROM request_events), now()"
        ).fetchone()  # type: ignore[misc]
        cursor = {
            "request_id": rid,
            "event_id": eid,
            "at": at.isoformat(),
            "full_at": at.isoformat(),
            "open": [],
        }
        conn.execute(
            "INSERT INTO job_runs (job, started_at, duration_s, outcome, counts, runs, failures,"
            " cursor) VALUES ('maintenance.consistency', now(), 0, 'ok', '{}', 1, 0, %s)"
            " ON CONFLICT (job) DO UPDATE SET cursor = EXCLUDED.cursor",
            (Jsonb(cursor),),
        )


def close_past_window(info: str) -> int:
    """What a site running maintenance.retention has: done requests past the reopen window
    (7 days) closed a week after they were done, with their close events."""
    import psycopg

    cut = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
    with psycopg.connect(info) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            f"INSERT INTO request_events ({EVENT_COLUMNS}) SELECT id, NULL, 'close', 'done',"
            " 'closed', NULL, done_at + interval '7 days' FROM requests"
            " WHERE status = 'done' AND done_at < %s ORDER BY id",
            (cut,),
        )
        cur = conn.execute(
            "UPDATE requests SET status = 'closed', closed_at = done_at + interval '7 days',"
            " version = version + 1 WHERE status = 'done' AND done_at < %s",
            (cut,),
        )
        conn.commit()
        conn.autocommit = True
        # As autovacuum leaves a site: the events' visibility map set, or every index-only read
        # of them would go to the table for the close events inserted here.
        conn.execute("VACUUM ANALYZE requests")
        conn.execute("VACUUM ANALYZE request_events")
        return cur.rowcount


def seed_comments(info: str, marker: dict[str, Any], total: int) -> None:
    """`total` comments with COPY, spread over the requests with a skew (most have a couple,
    some many), each written between its request's creation and its last change (or the hour
    after), by its author or its assignee. Ids follow the requests' order."""
    import psycopg

    rng = random.Random(marker["shape"]["seed"] + 1)
    anchor = dt.datetime.fromisoformat(marker["anchor"]).timestamp()
    t0 = time.monotonic()
    with psycopg.connect(info) as reader, psycopg.connect(info) as writer:
        n = int(reader.execute("SELECT count(*) FROM requests").fetchone()[0])  # type: ignore[index]
        # Each request's share: cumulative rounding makes the sum exactly `total`.
        weights = array("d", (rng.expovariate(1.0) ** 2 for _ in range(n)))
        scale = total / sum(weights)
        indexes = [
            (str(name), str(sql))
            for name, sql in writer.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                " AND tablename = 'comments' AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
                " WHERE c.conname = indexname)"
            )
        ]
        for name, _ in indexes:
            writer.execute(f'DROP INDEX "{name}"')  # type: ignore[arg-type]
        writer.execute("SET session_replication_role = replica")
        writer.execute("SET synchronous_commit = off")
        cum, done, cid = 0.0, 0, 0
        with (
            reader.cursor(name="bench_requests") as requests,
            writer.cursor().copy(
                "COPY comments (id, request_id, author_id, text, created_at) FROM STDIN"
            ) as copy,
        ):
            requests.itersize = 20_000
            requests.execute(
                "SELECT id, author_id, assignee_id, extract(epoch FROM created_at)::float8,"
                " extract(epoch FROM updated_at)::float8 FROM requests ORDER BY id"
            )
            for k, (rid, author, assignee, created, updated) in enumerate(requests):
                cum += weights[k] * scale
                upto = round(cum) if k + 1 < n else total
                end = min(max(updated, created + 3600.0), anchor)
                for _ in range(upto - done):
                    cid += 1
                    by = assignee if assignee is not None and rng.random() < 0.4 else author
                    at = created + rng.random() * max(0.0, end - created)
                    copy.write_row(
                        (
                            cid,
                            rid,
                            by,
                            COMMENT_TEXTS[int(len(COMMENT_TEXTS) * rng.random() ** 1.5)],
                            dt.datetime.fromtimestamp(at, dt.UTC),
                        )
                    )
                done = upto
        writer.commit()
        print(f"seed: {cid:,} comments in {time.monotonic() - t0:.1f} s", flush=True)
        writer.execute("RESET session_replication_role")
        writer.execute("SET maintenance_work_mem = '512MB'")
        for name, sql in indexes:
            writer.execute(sql)  # type: ignore[arg-type]
            print(f"seed: index {name}", flush=True)
        writer.execute(
            "SELECT setval(pg_get_serial_sequence('comments', 'id'),"
            " (SELECT max(id) FROM comments))"
        )
        writer.commit()
        writer.autocommit = True
        writer.execute("VACUUM (ANALYZE) comments")
    print(f"seed: comments done in {time.monotonic() - t0:.1f} s", flush=True)


# --- The planted problems ------------------------------------------------------------------------

REQUEST_COLUMNS = (
    "id, author_id, assignee_id, title, description, location, priority, status, rating, version,"
    " created_at, updated_at, accepted_at, started_at, done_at, closed_at, escalated_at"
)
EVENT_COLUMNS = "request_id, actor_id, action, from_status, to_status, note, created_at"
OUTBOX_COLUMNS = (
    "dedupe_key, chat_id, user_id, method, payload, state, attempts, next_attempt_at,"
    " created_at, sent_at, batch_id"
)
BROADCAST_COLUMNS = (
    "id, author_id, audience, text, state, total, created_at, heartbeat_at, fanned_out_at"
)
SLA_H = {"urgent": 4, "high": 24, "normal": 72, "low": 168}


@dataclass
class Plants:
    """What was planted: kind -> ids (requests, users, outbox, broadcasts, ...) or keys."""

    consistency: dict[str, list[int]] = field(default_factory=dict)
    orphans: dict[str, list[Any]] = field(default_factory=dict)
    overdue: list[int] = field(default_factory=list)
    retention: dict[str, int] = field(default_factory=dict)
    closing: list[int] = field(default_factory=list)  # done past the reopen window
    closing_decoys: list[int] = field(default_factory=list)


class Life:
    """A planted request and its history, consistent unless the caller breaks it."""

    def __init__(self, rid: int, author: int, created: dt.datetime, priority: str) -> None:
        self.rid, self.author, self.t, self.priority = rid, author, created, priority
        self.created = created
        self.status, self.assignee, self.rating = "new", None, None
        self.stamps: dict[str, dt.datetime | None] = dict.fromkeys(
            ("accepted_at", "started_at", "done_at", "closed_at")
        )
        self.events: list[tuple[Any, ...]] = []
        self._event(author, "created", None, "new")

    def _event(self, actor: int | None, action: str, frm: Any, to: Any, note: Any = None) -> None:
        self.events.append((self.rid, actor, action, frm, to, note, self.t))
        self.t += dt.timedelta(seconds=30)

    def go(self, action: str, actor: int, to: str, stamp: str | None = None) -> Life:
        if stamp:
            self.stamps[stamp] = self.t
        if action == "accept":
            self.assignee = actor
        if action == "reopen":
            self.stamps["done_at"] = None
        self._event(actor, action, self.status, to)
        self.status = to
        return self

    def row(self) -> tuple[Any, ...]:
        s = self.stamps
        return (
            self.rid,
            self.author,
            self.assignee,
            "Leaking tap",
            "Leaking tap (planted).",
            "Yard",
            self.priority,
            self.status,
            self.rating,
            len(self.events),
            self.created,
            self.events[-1][-1],
            s["accepted_at"],
            s["started_at"],
            s["done_at"],
            s["closed_at"],
            None,
        )


def plant(info: str, marker: dict[str, Any], var_dir: Path) -> Plants:
    """Everything in one transaction; returns what was planted, by kind."""
    import psycopg
    from psycopg.types.json import Jsonb

    rng = random.Random(7)
    anchor = dt.datetime.fromisoformat(marker["anchor"])
    wall = dt.datetime.now(dt.UTC).replace(microsecond=0)
    plants = Plants()
    with psycopg.connect(info) as conn:
        conn.execute("SET synchronous_commit = off")
        max_request = int(conn.execute("SELECT max(id) FROM requests").fetchone()[0])  # type: ignore[index]
        max_user = int(conn.execute("SELECT max(id) FROM users").fetchone()[0])  # type: ignore[index]
        staff = [r[0] for r in conn.execute("SELECT id FROM users WHERE role = 'staff'")]
        residents = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM users WHERE role = 'resident' AND erased_at IS NULL"
                " ORDER BY id LIMIT 5000"
            )
        ]
        erased = [r[0] for r in conn.execute("SELECT id FROM users WHERE erased_at IS NOT NULL")]
        known_tg = [
            r[0]
            for r in conn.execute("SELECT telegram_id FROM users WHERE id = ANY(%s)", (residents,))
        ]
        next_id = iter(range(max_request + 1, MISSING_ID))
        lives: list[Life] = []

        def life(created: dt.datetime, priority: str = "normal") -> Life:
            item = Life(next(next_id), rng.choice(residents), created, priority)
            lives.append(item)
            return item

        def recent() -> dt.datetime:
            # Open plants start just before the anchor: never overdue at it.
            return anchor - dt.timedelta(minutes=30) + dt.timedelta(seconds=rng.randint(0, 600))

        def past() -> dt.datetime:
            return anchor - dt.timedelta(days=rng.uniform(30, 600))

        # history_status: history says cancelled, the row says rejected (same stamp rules).
        ids = []
        for _ in range(PLANT):
            item = life(past())
            item.go("cancel", item.author, "cancelled", "closed_at").status = "rejected"
            ids.append(item.rid)
        plants.consistency["history_status"] = ids

        # status_timestamps: done without done_at, or done with a closed_at.
        ids = []
        for k in range(PLANT):
            who = rng.choice(staff)
            item = life(past()).go("accept", who, "accepted", "accepted_at")
            item.go("start", who, "in_progress", "started_at").go("done", who, "done", "done_at")
            if k % 2:
                item.stamps["done_at"] = None
            else:
                item.stamps["closed_at"] = item.t
            ids.append(item.rid)
        plants.consistency["status_timestamps"] = ids

        # assignee: in progress with nobody, or a resident, as assignee; the history names staff.
        ids = []
        for k in range(PLANT):
            who = rng.choice(staff)
            item = life(recent()).go("accept", who, "accepted", "accepted_at")
            item.go("start", who, "in_progress", "started_at")
            item.assignee = None if k % 2 else rng.choice(residents)
            ids.append(item.rid)
        plants.consistency["assignee"] = ids

        # stray_rating: reopened, still rated.
        ids = []
        for _ in range(PLANT):
            who = rng.choice(staff)
            item = life(recent()).go("accept", who, "accepted", "accepted_at")
            item.go("start", who, "in_progress", "started_at").go("done", who, "done", "done_at")
            item.go("reopen", item.author, "reopened")
            item.rating = rng.randint(1, 5)
            ids.append(item.rid)
        plants.consistency["stray_rating"] = ids

        # Overdue: open, past the SLA at the anchor; a fifth unassigned (every staff is told).
        for k in range(OVERDUE):
            priority = ("low", "normal", "normal", "high", "urgent")[k % 5]
            late = dt.timedelta(hours=SLA_H[priority] + rng.uniform(1, 120))
            item = life(anchor - late, priority)
            if k % 5:
                who = rng.choice(staff)
                item.go("accept", who, "accepted", "accepted_at")
                if k % 5 > 1:
                    item.go("start", who, "in_progress", "started_at")
            plants.overdue.append(item.rid)

        # Auto-close: done 9 days before the wall clock (past REOPEN_WINDOW_DAYS, 7); decoys
        # done 2 days before it.
        closing = []
        for k in range(PLANT + DECOYS):
            who = rng.choice(staff)
            item = life(wall - dt.timedelta(days=9 if k < PLANT else 2))
            item.go("accept", who, "accepted", "accepted_at")
            item.go("start", who, "in_progress", "started_at").go("done", who, "done", "done_at")
            closing.append(item.rid)
        plants.closing, plants.closing_decoys = closing[:PLANT], closing[PLANT:]

        with conn.cursor().copy(f"COPY requests ({REQUEST_COLUMNS}) FROM STDIN") as copy:
            for item in lives:
                copy.write_row(item.row())
        with conn.cursor().copy(f"COPY request_events ({EVENT_COLUMNS}) FROM STDIN") as copy:
            for item in lives:
                for event in item.events:
                    copy.write_row(event)

        # erased_identity: erased users who kept a name, a username or a Telegram id; decoys
        # are erased properly.
        users = []
        for k in range(PLANT + DECOYS):
            uid = max_user + 1 + k
            row: list[Any] = [uid, None, None, None, None, "en", "resident", True]
            row += [wall - dt.timedelta(days=400), wall - dt.timedelta(days=3)]
            row.append(wall - dt.timedelta(days=3))
            if k < PLANT:
                row[1 + k % 3] = (
                    FAR_TELEGRAM_ID + 500_000 + k if k % 3 == 0 else f"planted{k}"
                )  # telegram_id, username or first_name
            users.append(tuple(row))
        plants.consistency["erased_identity"] = [u[0] for u in users[:PLANT]]
        with conn.cursor().copy(
            "COPY users (id, telegram_id, username, first_name, last_name, language, role,"
            " reachable, created_at, updated_at, erased_at) FROM STDIN"
        ) as copy:
            for u in users:
                copy.write_row(u)

        outbox: list[tuple[Any, ...]] = []
        owner: dict[str, str] = {}

        def message(
            kind: str,
            user: int | None,
            state: str,
            lease: dt.datetime,
            created: dt.datetime,
            batch: int | None = None,
        ) -> None:
            key = f"bench:{kind}:{len(outbox)}"
            owner[key] = kind
            chat = 10_000_000 + (user or 0)
            outbox.append(
                (
                    key,
                    chat,
                    user,
                    "sendMessage",
                    Jsonb({"chat_id": chat, "text": "planted"}),
                    state,
                    1 if state != "pending" else 0,
                    lease,
                    created,
                    created if state == "sent" else None,
                    batch,
                )
            )

        hour = dt.timedelta(hours=1)
        for _ in range(PLANT):  # stale_lease: sending, the lease ended a day ago
            message(
                "stale_lease", rng.choice(residents), "sending", wall - 24 * hour, wall - 25 * hour
            )
        for _ in range(DECOYS):  # a live lease
            message("live_lease", rng.choice(residents), "sending", wall + hour, wall - hour)
        for _ in range(DECOYS):  # sent to an erased user: kept
            message("erased_sent", rng.choice(erased), "sent", wall, wall - hour)
        # Retention: finished and older than RETENTION_OUTBOX (30 d); decoys recent or pending.
        for k in range(PLANT):
            state = ("sent", "failed", "dead")[k % 3]
            message("retention_outbox", rng.choice(residents), state, wall, wall - 60 * 24 * hour)
        for _ in range(DECOYS):
            message("recent_sent", rng.choice(residents), "sent", wall, wall - hour)
        for _ in range(DECOYS):
            message("old_pending", rng.choice(residents), "pending", wall, wall - 60 * 24 * hour)

        # Broadcasts: stuck sending (heartbeat or none), and decoys; stale drafts are orphans.
        broadcasts: list[tuple[Any, ...]] = []
        bid = iter(range(1, MISSING_ID))

        def broadcast(state: str, created: dt.datetime, beat: dt.datetime | None) -> int:
            # One sending has its rows written (none here): its drains died. Not written, the
            # relay of bench/scheduler_soak.py would restart 1,000 fan-outs to 100,000 users.
            i = next(bid)
            written = created if state == "sending" else None
            broadcasts.append((i, 1, "residents", "planted", state, 0, created, beat, written))
            return i

        plants.consistency["broadcast_heartbeat"] = [
            broadcast("sending", wall - 3 * hour, None if k % 2 else wall - hour)
            for k in range(PLANT)
        ]
        for _ in range(DECOYS):
            broadcast("sending", wall - hour, wall)
            broadcast("draft", wall - hour, None)  # fresh draft
        for _ in range(DECOYS // 10):  # an old draft with rows: left alone
            held = broadcast("draft", wall - 72 * hour, None)
            message("draft_row", rng.choice(residents), "cancelled", wall, wall - hour, held)
        plants.orphans["stale_draft_broadcasts"] = [
            broadcast("draft", wall - 48 * hour - k * 60 * dt.timedelta(seconds=1), None)
            for k in range(PLANT)
        ]
        with conn.cursor().copy(f"COPY broadcasts ({BROADCAST_COLUMNS}) FROM STDIN") as copy:
            for b in broadcasts:
                copy.write_row(b)
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('broadcasts', 'id'), (SELECT max(id) FROM"
            " broadcasts))"
        )

        # Retention's other kinds: idempotency keys (7 d) and generated files (30 d).
        with conn.cursor().copy(
            "COPY processed_commands (key, task_name, fingerprint, created_at) FROM STDIN"
        ) as copy:
            for k in range(PLANT + DECOYS):
                at = wall - (10 * 24 * hour if k < PLANT else hour)
                copy.write_row((f"bench:{k}", "bench", None, at))
        with conn.cursor().copy(
            "COPY generated_files (key, file_name, content, created_at) FROM STDIN"
        ) as copy:
            for k in range(PLANT + DECOYS):
                at = wall - (40 * 24 * hour if k < PLANT else hour)
                copy.write_row((f"bench:{k}", "report.csv", b"a,b\n1,2\n" * 8, at))
        plants.retention = {"idempotency_keys": PLANT, "outbox": PLANT, "generated_files": PLANT}

        # Orphans: foreign keys off for the rest of this transaction.
        conn.execute("SET LOCAL session_replication_role = replica")
        missing = [MISSING_ID + 1 + k for k in range(PLANT)]
        with conn.cursor().copy(
            "COPY comments (request_id, author_id, text, created_at) FROM STDIN"
        ) as copy:
            for rid in missing:
                copy.write_row((rid, rng.choice(residents), "planted orphan", wall - hour))
        with conn.cursor().copy(
            "COPY attachments (request_id, kind, file_id, created_at) FROM STDIN"
        ) as copy:
            for rid in missing:
                copy.write_row((rid, "photo", f"planted-{rid}", wall - hour))
        with conn.cursor().copy(f"COPY request_events ({EVENT_COLUMNS}) FROM STDIN") as copy:
            for rid in missing:
                copy.write_row((rid, None, "created", None, "new", None, wall - hour))
        for uid in missing:
            message("outbox_without_user", uid, "pending", wall, wall - hour)
        for _ in range(PLANT):
            message("outbox_of_erased_users", rng.choice(erased), "pending", wall, wall - hour)
        for b in missing:
            message("outbox_without_broadcast", rng.choice(residents), "sent", wall, wall - hour, b)
        with conn.cursor().copy(f"COPY outbox ({OUTBOX_COLUMNS}) FROM STDIN") as copy:
            for m in outbox:
                copy.write_row(m)
        ids_by_kind: dict[str, list[int]] = {}
        for oid, key in conn.execute(
            "SELECT id, dedupe_key FROM outbox WHERE dedupe_key LIKE 'bench:%'"
        ):
            ids_by_kind.setdefault(owner[key], []).append(oid)
        plants.consistency["stale_lease"] = sorted(ids_by_kind["stale_lease"])
        for kind in ("outbox_without_user", "outbox_of_erased_users", "outbox_without_broadcast"):
            plants.orphans[kind] = sorted(ids_by_kind[kind])
        for kind, table in (
            ("comments_without_request", "comments"),
            ("attachments_without_request", "attachments"),
            ("events_without_request", "request_events"),
        ):
            plants.orphans[kind] = [
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM {table} WHERE request_id > %s ORDER BY id",  # type: ignore[arg-type]
                    (MISSING_ID,),
                )
            ]
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE outbox, broadcasts, processed_commands, generated_files, attachments")

    # Dialog keys (embedded defaults: the SQLite file): users nobody is, and decoys of users.
    var_dir.mkdir(parents=True, exist_ok=True)
    keys = [f"fsm:{FAR_TELEGRAM_ID + k}:{FAR_TELEGRAM_ID + k}:default" for k in range(PLANT)]
    with contextlib.closing(sqlite3.connect(var_dir / "dialogs.sqlite3")) as db, db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS dialogs"
            " (key TEXT PRIMARY KEY, state TEXT, data TEXT NOT NULL DEFAULT '{}')"
        )
        db.executemany(
            "INSERT INTO dialogs (key, state) VALUES (?, 'Draft:title')", [(k,) for k in keys]
        )
        db.executemany(
            "INSERT INTO dialogs (key, state) VALUES (?, 'Draft:title')",
            [(f"fsm:{tg}:{tg}:default",) for tg in known_tg[:DECOYS]],
        )
    plants.orphans["dialog_keys"] = keys
    # Retention of the orphans job's backups (RETENTION_BACKUPS, 30 d): three old files.
    backups = var_dir / "backups"
    backups.mkdir(parents=True, exist_ok=True)
    old = (wall - dt.timedelta(days=60)).timestamp()
    for k in range(3):
        path = backups / f"orphans-20200101T00000{k}Z.jsonl"
        path.write_text("{}\n", encoding="utf-8")
        os.utime(path, (old, old))
    plants.retention["backups"] = 3
    return plants


# --- The operations, each in a fresh process -----------------------------------------------------


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def operate(name: str, anchor_iso: str) -> dict[str, Any]:
    """Runs in a spawned process: one operation, timed, with this process's peak RSS."""
    from sqlalchemy import event, func, select, text

    from core.logging import configure_logging
    from core.settings import get_settings
    from db.models import Request
    from db.requests import overdue_clause
    from db.session import get_engine, session_scope
    from workers.upkeep import consistency, escalation, orphans, retention

    configure_logging("console", "ERROR")  # repair logs each fix at WARNING
    anchor = dt.datetime.fromisoformat(anchor_iso)
    with session_scope() as session:
        session.execute(text("SELECT 1"))
    out: dict[str, Any] = {"name": name, "rss_imports_mb": maxrss_mb()}
    in_db: list[float] = []
    started: list[float] = []
    event.listen(
        get_engine(), "before_cursor_execute", lambda *_: started.append(time.perf_counter())
    )
    event.listen(
        get_engine(),
        "after_cursor_execute",
        lambda *_: in_db.append(time.perf_counter() - started.pop()),
    )
    t0 = time.perf_counter()
    if name == "baseline":
        with session_scope() as session:
            out["overdue"] = session.scalar(
                select(func.count())
                .select_from(Request)
                .where(overdue_clause(session, anchor, get_settings().sla_by_priority()))
            )
            out["retention"] = {
                rule.name: session.scalar(
                    select(func.count()).select_from(rule.model).where(rule.where)
                )
                for rule in retention.rules(dt.datetime.now(dt.UTC))
            }
        out["consistency"] = consistency.check(limit_per_kind=1000).totals
        out["orphans"] = {f.kind: f.count for f in orphans.scan()}
    elif name == "escalate":
        count, notices = escalation.escalate(at=anchor)
        out.update(count=count, notices=len(notices))
    elif name in ("check", "check_full", "check_full_1"):
        if name == "check_full_1":
            consistency.RANGE_PARTS = 1  # the same check on one connection, side by side
        since = consistency.last_cursor(full=name != "check")
        assert (since is None) == (name != "check"), "the nightly check's cursor is missing"
        report = consistency.check(limit_per_kind=1000, since=since)
        out.update(
            totals=report.totals,
            listed=[(v.kind, v.row_id, v.repairable) for v in report.violations],
        )
    elif name == "repair":
        report = consistency.repair(limit_per_kind=2000, since=consistency.last_cursor())
        out.update(found=report.found, repaired=report.repaired, left=report.totals)
    elif name == "scan":
        out["found"] = {f.kind: f.count for f in orphans.scan()}
    elif name == "apply":
        path, deleted = orphans.apply(backup_dir=get_settings().var_dir / "backups")
        out.update(path=str(path), deleted={f.kind: f.count for f in deleted})
    elif name == "retention":
        window = dt.timedelta(days=get_settings().reopen_window_days)
        due = Request.done_at < dt.datetime.now(dt.UTC) - window
        with session_scope() as session:
            out["due_closing"] = session.scalar(
                select(func.count()).select_from(Request).where(Request.status == "done", due)
            )
        in_db.clear()
        t0 = time.perf_counter()
        out["counts"] = retention.prune()
    else:
        raise ValueError(name)
    out["sql_s"], out["statements"] = sum(in_db), len(in_db)
    out["seconds"] = time.perf_counter() - t0
    out["rss_mb"] = maxrss_mb()
    return out


def run(name: str, anchor_iso: str) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(operate, name, anchor_iso).result()


# --- Main ----------------------------------------------------------------------------------------


def table_counts(info: str) -> dict[str, int]:
    import psycopg

    tables = ("requests", "request_events", "comments", "attachments", "users", "outbox")
    tables += ("broadcasts", "processed_commands", "generated_files")
    with psycopg.connect(info) as conn:
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index, arg-type]
            for t in tables
        }


def remaining(info: str, plants: Plants) -> dict[str, int]:
    """Planted orphans still there after apply (should be none)."""
    import psycopg

    where = {
        "comments_without_request": "comments",
        "attachments_without_request": "attachments",
        "events_without_request": "request_events",
        "outbox_without_user": "outbox",
        "outbox_of_erased_users": "outbox",
        "outbox_without_broadcast": "outbox",
        "stale_draft_broadcasts": "broadcasts",
    }
    out = {}
    with psycopg.connect(info) as conn:
        for kind, table in where.items():
            row = conn.execute(
                f"SELECT count(*) FROM {table} WHERE id = ANY(%s)",  # type: ignore[arg-type]
                (plants.orphans[kind],),
            ).fetchone()
            out[kind] = int(row[0]) if row else -1
    return out


def closing_left(info: str, plants: Plants) -> dict[str, int]:
    """Planted done requests past the window still done, and decoys closed (should be none)."""
    import psycopg

    with psycopg.connect(info) as conn:
        count = "SELECT count(*) FROM requests WHERE id = ANY(%s) AND status = %s"
        old = conn.execute(count, (plants.closing, "done")).fetchone()
        young = conn.execute(count, (plants.closing_decoys, "closed")).fetchone()
    return {"planted still done": old[0] if old else -1, "decoys closed": young[0] if young else -1}


def fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.maintenance", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--reseed", action="store_true", help="make the base data set again")
    args = parser.parse_args(argv)
    started = time.monotonic()
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if "bench" not in database_name(url):
        raise SystemExit(f"refusing to drop and plant {database_name(url)!r}: not a bench database")
    base = url_for(url, database_name(url) + "_base")
    var_dir = Path(tempfile.mkdtemp(prefix="bench-maintenance-"))
    os.environ.update(
        DATABASE_URL=url, VAR_DIR=str(var_dir), LOG_LEVEL="ERROR", LOG_FORMAT="console"
    )
    os.environ.pop("REDIS_URL", None)
    from core.logging import configure_logging
    from core.settings import get_settings

    get_settings.cache_clear()
    configure_logging("console", "ERROR")
    print(f"$ {shlex.join([Path(sys.executable).name, '-m', 'bench.maintenance', *sys.argv[1:]])}")
    print(
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, cpus: {os.cpu_count()},"
        f" database: {database_name(url)} (copied from {database_name(base)}), VAR_DIR: {var_dir}"
    )
    marker = prepare_base(base, args.reseed)
    anchor = marker["anchor"]

    t0 = time.monotonic()
    admin_execute(url, f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
    if not copy_database(base, url, tries=5):
        raise SystemExit(f"{database_name(base)} is busy: cannot copy it")
    print(f"run database: {database_name(url)} copied in {time.monotonic() - t0:.1f} s", flush=True)

    t0 = time.monotonic()
    base_line = run("baseline", anchor)
    print(
        f"baseline (before planting, {time.monotonic() - t0:.1f} s): overdue at the anchor "
        f"{base_line['overdue']:,}; consistency {fmt(base_line['consistency'])}; orphans "
        f"{fmt(base_line['orphans'])}; retention {fmt(base_line['retention'])}",
        flush=True,
    )
    t0 = time.monotonic()
    nightly_check_ran(conninfo(url))
    plants = plant(conninfo(url), marker, var_dir)
    sizes = table_counts(conninfo(url))
    print(
        f"planted in {time.monotonic() - t0:.1f} s: {PLANT:,} of each consistency and orphan "
        f"kind, {OVERDUE} overdue, {PLANT:,} of each retention kind (+ decoys); rows: "
        f"{fmt(sizes)}",
        flush=True,
    )

    results: dict[str, dict[str, Any]] = {}
    names = ("escalate", "check", "check_full", "check_full_1", "repair", "scan", "apply")
    for name in (*names, "retention"):
        results[name] = run(name, anchor)
        print(f"{name}: {results[name]['seconds']:.2f} s", flush=True)
    after = table_counts(conninfo(url))
    left = remaining(conninfo(url), plants)

    # Found vs expected, by kind.
    kinds: list[list[str]] = []
    bl = base_line["consistency"]
    check_ok = True
    listed: dict[str, set[int]] = {}
    for kind, row_id, _ in results["check"]["listed"]:
        listed.setdefault(kind, set()).add(row_id)
    for kind, ids in plants.consistency.items():
        got = results["check"]["totals"].get(kind, 0)
        want = bl.get(kind, 0) + len(ids)
        exact = listed.get(kind, set()) == set(ids) if not bl.get(kind) else None
        check_ok &= got == want and exact is not False
        fixed = results["repair"]["repaired"].get(kind, 0)
        still = results["repair"]["left"].get(kind, 0)
        want_fixed = 0 if kind == "broadcast_heartbeat" else len(ids)
        kinds.append(
            [
                f"check: {kind}",
                f"{got:,}",
                f"{want:,}",
                "yes" if exact else ("no" if exact is False else "n/a (baseline)"),
                f"repaired {fixed:,} / {want_fixed:,}, left {still:,}",
            ]
        )
    scan_ok = apply_ok = True
    bo = base_line["orphans"]
    for kind, ids in plants.orphans.items():
        got = results["scan"]["found"].get(kind, 0)
        gone = results["apply"]["deleted"].get(kind, 0)
        want = bo.get(kind, 0) + len(ids)
        scan_ok &= got == want
        apply_ok &= gone == want and left.get(kind, 0) == 0
        kinds.append(
            [
                f"orphans: {kind}",
                f"{got:,}",
                f"{want:,}",
                "-" if kind == "dialog_keys" else ("yes" if left.get(kind) == 0 else "no"),
                f"deleted {gone:,}" + (f", planted left {left[kind]}" if left.get(kind) else ""),
            ]
        )
    br = {**base_line["retention"], "requests_closed": results["retention"]["due_closing"]}
    plants.retention["requests_closed"] = 0  # the due ones, the planted among them, counted above
    closing = closing_left(conninfo(url), plants)
    retention_ok = closing == {"planted still done": 0, "decoys closed": 0}
    kinds.append(["retention: planted closing", fmt(closing), "0, 0", "-", ""])
    for kind, n in plants.retention.items():
        got = results["retention"]["counts"].get(kind, 0)
        want = br.get(kind, 0) + n
        retention_ok &= got == want
        kinds.append([f"retention: {kind}", f"{got:,}", f"{want:,}", "-", ""])
    changed_rows = {t: after[t] - sizes[t] for t in sizes if sizes[t] != after[t]}

    def row(
        op: str, name: str, found: int, expected: int, ok: bool, target: float = TARGET_S
    ) -> list[str]:
        r = results[name]
        met = r["seconds"] < target and r["rss_mb"] < TARGET_RSS_MB and ok
        return [
            op,
            f"{found:,}",
            f"{expected:,}",
            f"{r['seconds']:.2f}",
            f"{r['sql_s']:.2f} ({r['statements']:,})",
            f"{r['rss_mb']:.0f}",
            f"{r['rss_imports_mb']:.0f}",
            f"<{target:.0f}",
            "yes" if met else "NO" + ("" if ok else " (counts)"),
        ]

    esc = results["escalate"]
    want_esc = base_line["overdue"] + OVERDUE
    total_c = sum(results["check"]["totals"].values())
    want_c = sum(bl.values()) + sum(len(v) for v in plants.consistency.values())
    rep = results["repair"]
    total_r = sum(rep["repaired"].values())
    want_r = sum(len(v) for k, v in plants.consistency.items() if k != "broadcast_heartbeat")
    want_o = sum(bo.values()) + sum(len(v) for v in plants.orphans.values())
    want_t = sum(br.values()) + sum(plants.retention.values())
    rows = [
        row(
            "escalation sweep (at the anchor)",
            "escalate",
            esc["count"],
            want_esc,
            esc["count"] == want_esc,
        ),
        row("consistency check (nightly: changes + sweep)", "check", total_c, want_c, check_ok),
        row(
            "consistency check (whole: --full)",
            "check_full",
            sum(results["check_full"]["totals"].values()),
            want_c,
            results["check_full"]["totals"] == results["check"]["totals"],
        ),
        row(
            "  the same on one connection (for comparison)",
            "check_full_1",
            sum(results["check_full_1"]["totals"].values()),
            want_c,
            results["check_full_1"]["totals"] == results["check"]["totals"],
        ),
        row(
            "consistency repair (limit 2000)",
            "repair",
            total_r,
            want_r,
            total_r == want_r and rep["left"] == {"broadcast_heartbeat": PLANT},
            TARGET_BULK_S,
        ),
        row("orphans scan", "scan", sum(results["scan"]["found"].values()), want_o, scan_ok),
        row(
            "orphans --apply",
            "apply",
            sum(results["apply"]["deleted"].values()),
            want_o,
            apply_ok,
            TARGET_BULK_S,
        ),
        row(
            "retention prune",
            "retention",
            sum(results["retention"]["counts"].values()),
            want_t,
            retention_ok,
        ),
    ]
    print()
    head = ["operation", "found/changed", "expected", "seconds", "in SQL s (statements)"]
    head += ["peak RSS MB", "after imports MB"]
    print(render_table([*head, "target s", "target met"], rows))
    print()
    print(render_table(["kind", "found", "expected", "exactly the planted", "then"], kinds))
    print()
    print(
        f"escalation: {esc['count']:,} escalated ({base_line['overdue']:,} seeded + {OVERDUE} "
        f"planted), {esc['notices']:,} notices written to the outbox; repair: found "
        f"{fmt(rep['found'])}; left {fmt(rep['left'])} (broadcast heartbeats are reported, not "
        f"repaired); apply: backup {results['apply']['path']}; row counts changed by the run "
        f"(escalation and repair add events): {fmt(changed_rows)}"
    )
    print(
        "seconds: the call alone, each operation in its own fresh process, one after another "
        "in this order (in SQL: the time spent in the driver's execute, and the number of "
        "statements); peak RSS: that process's ru_maxrss, the project's imports included "
        f"(after imports: before the call). Whole run {time.monotonic() - started:.0f} s."
    )
    met = all(r[-1] == "yes" for r in rows)
    print(
        f"targets (each < {TARGET_S:.0f} s, repair and apply < {TARGET_BULK_S:.0f} s, < "
        f"{TARGET_RSS_MB:.0f} MB, every planted problem found, no false positives): "
        f"{'MET' if met else 'MISSED'}"
    )
    with contextlib.suppress(OSError):
        for path in sorted(var_dir.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        var_dir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
