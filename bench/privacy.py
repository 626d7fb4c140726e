"""GDPR erasure and export of one heavy user on a large site: the erasure's time and the rows it
touched, whether other users' commands were held up meanwhile, and the export's time and peak
RSS, against the targets (erasure < 1 s, other users' commands < 100 ms, export < 2 s and
< 300 MB).

    .venv/bin/python -m bench.privacy [--reseed] [--mode anonymize|delete] [--threads 4]
        [--interval 0.25] [--near-interval 1.0] [--around 2] [--no-explain] [--no-scan]

The data set lives in zavhoz_bench_privacy (postgresql+psycopg://postgres@127.0.0.1:5432;
BENCH_PRIVACY_URL names another, e.g. for a small --requests one), made once and marked with
a JSON comment on the database; --reseed makes it again (about 6 minutes on 2 cores). It is
the reports benchmark's site (bench/report_seed.py, streamed with COPY: 100,000 users,
1,000,000 requests over two years, ~4.2M history events) in which user #3, an admin named
Vladimir Zavhozov (@vzavhozov), is THE heavy user:

- the author of every 100th request (10,000, interleaved by id and time with everyone else's,
  as in production), each with one photo, a history (created/cancel/reopen/rated by him,
  accept/start/done by staff; one done note in ten, by staff, addresses him by name) and
  3-6 comments by him (45,000) and 1-3 by the staff on it (one in seven addresses him);
- the assignee (as an admin) of every 1000th request (#...333: ~900), with done notes of his;
- a commenter on every 200th request of others (#...50: 5,000): 50,000 comments in all, each
  with its history event (and ~340 more where he is the assignee);
- outbox rows of the last 30 days (retention keeps 30): his 1,000 replies, notices to and
  about his requests, and the 99,496 rows of a broadcast to everyone he sent 7 days ago,
  signed with his name (his two older broadcasts' rows are pruned);
- 30 dead letters of his among 300, and 34 report CSVs (30 daily, 4 weekly; ~8 MB) naming
  staff and, where he handled a request, him.

Everyone else: ~930,000 comments (none to ~5 per request, by the author or the assignee;
without history events), a photo on one request in five, ~250,000 outbox rows of the last
30 days (replies and notices about requests, user_id, actor_id and request_id set as the desk
sets them). Deterministic (fixed seeds), ids in the order a live site writes them; VACUUM
ANALYZE at the end.

A run copies the base into zavhoz_bench_privacy_run (CREATE DATABASE ... TEMPLATE ...
STRATEGY FILE_COPY: the erasure never touches the base), then:

1. Export: `write_export` of the heavy user, twice, in a fresh spawned process; peak RSS is
   its VmHWM (ru_maxrss would carry this process's peak across fork+exec), imports included;
   the first export in the process is the one judged. The time spent in psycopg's execute and
   fetch calls is counted apart ("in the driver"). The file is parsed here and counted.
2. Erasure with traffic: a spawned process imports everything and connects, then waits. Here,
   `--threads` threads apply other users' commands through the real command path
   (`workers.command_runner.apply_command` with `workers.commands.HANDLERS`: AddComment and
   ShowMyRequests of residents on their own open requests, one per `--interval` each; nothing
   is sent to Telegram) through a warm-up, `--around` s before, during, and `--around` s after
   the erasure as a worker runs it: step one (`unlink`, committed: the identity gone), then
   `scrub_step` after `scrub_step`, each committed, to the end; step one is timed from the
   call to the commit (the target), every step's transaction and every statement's execute
   time captured. A failed step (a deadlock is an outage to the worker) is retried after 1 s,
   up to 5 failures in all, and reported.
   A command's latency counts as "during" when it overlaps the erasure (failed attempts
   included), else "outside". A sampler polls pg_stat_activity every ~10 ms for backends
   waiting on a lock and who blocks them. A process of its own drives the commands that do
   touch his rows, one per `--near-interval` (a resident commenting on a request he is
   assigned to: the notice to him; staff commenting on his request): reported apart ("near").
   It stops at the first failed step, so that the retry is measured with the others'
   traffic alone.
3. What is left of him: his Telegram id in any integer column and his names in any text, JSON
   or binary column of every table, found with SQL, and how many of those rows were created
   by transactions that began after the erasure did.
4. On a second copy, the export again and the erasure alone (no traffic): on 2 cores the
   traffic competes for the CPU, this is the erasure's own cost. Its statements are then
   replayed on a third copy in one transaction (rolled back), each distinct statement once
   under EXPLAIN (ANALYZE, BUFFERS): time per statement and its plan's scans; the plans in
   var/bench-privacy-plans.txt.

With REDIS_URL unset and VAR_DIR a fresh temporary directory, the dialog keys step finds no
dialogs.sqlite3 (0). The load average is printed: the machine may be shared. Exits non-zero
only when the setup fails, never on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from unittest import mock

from bench import report_seed
from bench.maintenance import (
    COMMENT_TEXTS,
    admin_execute,
    copy_database,
    exists,
    table_counts,
    url_for,
)
from bench.report_seed import DAY_S, FIRST_TELEGRAM_ID, Event, Shape, Site
from bench.reports import (
    conninfo,
    create_database,
    database_name,
    maxrss_mb,
    read_marker,
    scan_of,
    vm_hwm_mb,
    walk,
    write_marker,
)

BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_privacy"
VERSION = 1  # of what this module adds to report_seed's site: another version is reseeded
ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "var" / "bench-privacy-plans.txt"

TARGET_ERASE_S = 1.0
TARGET_OTHERS_MS = 100.0
TARGET_EXPORT_S = 2.0
TARGET_EXPORT_MB = 300.0

# The heavy user: an admin of the generated site (report_seed: ids 1-3 are admins).
HEAVY_ID = 3
HEAVY_TG = FIRST_TELEGRAM_ID + HEAVY_ID
HEAVY_USERNAME, HEAVY_FIRST, HEAVY_LAST = "vzavhozov", "Vladimir", "Zavhozov"
HEAVY_NEEDLES = (HEAVY_USERNAME, HEAVY_FIRST, HEAVY_LAST)
HEAVY_EVERY = 100  # request ids divisible by this are his: 10,000 of 1,000,000
HANDLED_EVERY, HANDLED_AT = 1000, 333  # ... and these he handled as an admin (1,000)
ELSEWHERE_EVERY, ELSEWHERE_AT = 200, 50  # ... on these he left a comment (5,000)
OUTBOX_DAYS = 30  # RETENTION_OUTBOX: older finished rows are gone
HEAVY_REPLIES = 1_000
DEAD_LETTERS, HEAVY_DEAD_LETTERS = 300, 30
CROWD_COMMENT_MEAN = 1.38  # floor(Exp(mean 1.38)): 0.94 comments per request on average
CROWD_PHOTO_SHARE = 0.2
MENTION_SHARE = 0.15  # staff comments on his requests that address him
MENTIONS = (f"{HEAVY_FIRST}, ", f"@{HEAVY_USERNAME}, ", f"{HEAVY_FIRST} {HEAVY_LAST}, ")
RESIDENT_TEXTS = (
    "Any news on this?",
    "The master did not come today.",
    "Still not fixed, please check again.",
    "I will be at home after 18:00.",
    "Thank you, all good now.",
    "Photo of the damage attached.",
    "Please call before coming, the intercom is broken.",
    "The same problem in flat 12.",
)
STAFF_TEXTS = (
    "we will come tomorrow morning.",
    "parts ordered, back on Thursday.",
    "please leave access to the basement open.",
    "done, please check.",
    "could you send a photo of the meter?",
)
BROADCAST_TEXT = (
    "Dear residents, hot water will be off on Tuesday from 10:00 to 16:00 for maintenance of"
    f" the boiler room. Questions: write to me here. {HEAVY_FIRST} {HEAVY_LAST}, building manager"
)

ERASURE_APP, EXPORT_APP = "bench-erasure", "bench-export"
ERASE_ATTEMPTS = 5  # a deadlock is an outage to the worker: retried (after 1 s here)
CROWD_APP, NEAR_APP = "bench-crowd", "bench-near"
OPEN = ("new", "accepted", "in_progress", "reopened")


# --- The data set ----------------------------------------------------------------------------


class PrivacySite(Site):
    """report_seed's site with the heavy user woven in (see the module's docstring): requests
    are generated in id order, so `life` is called once per request, in order."""

    def __init__(self, shape: Shape, anchor: dt.datetime, tz: Any) -> None:
        super().__init__(shape, anchor, tz)
        self.extra = random.Random(shape.seed + 11)  # report_seed's own draws stay as they are
        self.rid = 0

    def user_rows(self) -> Iterator[tuple[Any, ...]]:
        for row in super().user_rows():
            if row[0] == HEAVY_ID:  # (id .. erased_at): his names, an admin since he joined
                profile = (HEAVY_ID, HEAVY_TG, HEAVY_USERNAME, HEAVY_FIRST, HEAVY_LAST, "ru")
                row = (*profile, "admin", True, row[8], row[9], None)
            yield row

    def requests(
        self, on_request: Callable[[tuple[Any, ...]], None], on_event: Callable[..., None]
    ) -> report_seed.Counts:
        def request(row: tuple[Any, ...]) -> None:
            if row[0] % HEAVY_EVERY == 0:
                row = (row[0], HEAVY_ID, *row[2:])
            on_request(row)

        return super().requests(request, on_event)

    def life(self, created: float, priority: str, author: int) -> list[Event]:
        self.rid += 1
        rid = self.rid
        if rid % HEAVY_EVERY == 0:
            return self._his(rid, super().life(created, priority, HEAVY_ID))
        events = super().life(created, priority, author)
        if rid % HANDLED_EVERY == HANDLED_AT:
            return self._handled(events)
        if rid % ELSEWHERE_EVERY == ELSEWHERE_AT:
            end = self._end(events)
            t = created + self.extra.random() * max(0.0, end - created)
            return sorted([*events, (t, "comment", None, None, HEAVY_ID, None)], key=_t)
        return events

    def _end(self, events: list[Event]) -> float:
        """Comments fall between creation and the last change (or the hour after), before the
        anchor."""
        happened = [e[0] for e in events if e[0] < self.anchor]
        return min(max(happened[-1], events[0][0] + 3600), self.anchor - 60)

    def _his(self, rid: int, events: list[Event]) -> list[Event]:
        r = self.extra
        out = [
            (t, a, f, to, actor, f"{HEAVY_FIRST}, replaced the part; call if it leaks again.")
            if a == "done" and r.random() < 0.10
            else (t, a, f, to, actor, note)
            for t, a, f, to, actor, note in events
        ]
        end, created = self._end(out), out[0][0]
        for _ in range(3 + (rid // HEAVY_EVERY) % 4):  # 3, 4, 5, 6: 45,000 in all
            t = created + r.random() * max(0.0, end - created)
            out.append((t, "comment", None, None, HEAVY_ID, None))
        accepted = next((e for e in out if e[1] == "accept" and e[0] < end), None)
        if accepted is not None:
            for _ in range(r.randint(1, 3)):
                t = accepted[0] + r.random() * (end - accepted[0])
                out.append((t, "comment", None, None, accepted[4], None))
        return sorted(out, key=_t)

    def _handled(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for t, action, frm, to, actor, note in events:
            if actor is not None and self.first_staff <= actor < self.first_resident:
                actor = HEAVY_ID
                if action == "done" and self.extra.random() < 0.5:
                    note = "Replaced the valve, pressure checked."
            out.append((t, action, frm, to, actor, note))
        return out


def _t(event: Event) -> float:
    return event[0]


def _name(username: str | None, first: str | None, last: str | None) -> str:
    """As the desk names people (workers/desk/render.py: name_of)."""
    if username:
        return "@" + username
    return " ".join(p for p in (first, last) if p) or "someone"


OUTBOX_COLUMNS = (
    "id, dedupe_key, chat_id, user_id, actor_id, request_id, batch_id, method, payload, state,"
    " attempts, next_attempt_at, created_at, sent_at"
)


def _copy_tables_indexes(conn: Any, tables: tuple[str, ...]) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " AND tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint c"
        " WHERE c.conname = indexname) ORDER BY tablename, indexname",
        (list(tables),),
    ).fetchall()
    return [(str(name), str(sql)) for name, sql in rows]


def seed_rest(info: str, marker: dict[str, Any], out: Callable[[str], None]) -> dict[str, Any]:
    """Comments, attachments, outbox, broadcasts, dead letters and report files, with COPY in
    one pass over the requests in id order (see the module's docstring)."""
    import psycopg

    rng = random.Random(marker["shape"]["seed"] + 2)
    anchor = dt.datetime.fromisoformat(marker["anchor"])
    anchor_s = anchor.timestamp()
    cutoff = anchor_s - OUTBOX_DAYS * DAY_S
    at = dt.datetime.fromtimestamp
    counts: Counter[str] = Counter()
    t0 = time.monotonic()
    tables = ("comments", "attachments", "outbox")
    with (
        psycopg.connect(info) as reader,
        psycopg.connect(info) as comments_conn,
        psycopg.connect(info) as files_conn,
    ):
        users: dict[int, tuple[int | None, str]] = {
            uid: (tg, _name(username, first, last))
            for uid, tg, username, first, last in reader.execute(
                "SELECT id, telegram_id, username, first_name, last_name FROM users"
            )
        }
        staff = [u for (u,) in reader.execute("SELECT id FROM users WHERE role = 'staff'")]
        said: dict[int, list[tuple[int, dt.datetime]]] = {}
        for rid, actor, when in reader.execute(
            "SELECT request_id, actor_id, created_at FROM request_events WHERE action = 'comment'"
            " ORDER BY request_id, id"
        ):
            said.setdefault(rid, []).append((actor, when))
        reader.commit()
        indexes = _copy_tables_indexes(comments_conn, tables)
        for name, _ in indexes:
            comments_conn.execute(f'DROP INDEX "{name}"')
        comments_conn.commit()
        for conn in (comments_conn, files_conn):
            conn.execute("SET session_replication_role = replica")
            conn.execute("SET synchronous_commit = off")
        out(f"seed: {len(said):,} requests with comment events; {len(indexes)} indexes dropped")

        notices: list[tuple[Any, ...]] = []  # (t, chat, user, actor, request, batch, text)

        def notice(t: float, to: int | None, actor: int | None, rid: int | None, text: str) -> None:
            if t < cutoff or to is None:
                return
            chat = users[to][0]
            if chat is not None:
                notices.append((t, chat, to, actor, rid, None, text))

        cid = aid = 0
        last = time.monotonic()
        with (
            reader.cursor(name="bench_privacy_requests") as requests,
            comments_conn.cursor().copy(
                "COPY comments (id, request_id, author_id, text, created_at) FROM STDIN"
            ) as comment_copy,
            files_conn.cursor().copy(
                "COPY attachments (id, request_id, kind, file_id, file_unique_id, mime_type,"
                " size, created_at) FROM STDIN"
            ) as file_copy,
        ):
            requests.itersize = 20_000
            requests.execute(
                "SELECT id, author_id, assignee_id, title, extract(epoch FROM created_at)::float8,"
                " extract(epoch FROM updated_at)::float8, extract(epoch FROM accepted_at)::float8,"
                " extract(epoch FROM done_at)::float8 FROM requests ORDER BY id"
            )
            for rid, author, assignee, title, created, updated, accepted, done in requests:
                his = author == HEAVY_ID
                end = min(max(updated, created + 3600.0), anchor_s - 60)
                written: list[tuple[int, float, str]] = []
                if rid in said:
                    for actor, when in said.pop(rid):
                        if actor == HEAVY_ID:
                            text = rng.choice(RESIDENT_TEXTS)
                        else:
                            text = rng.choice(STAFF_TEXTS)
                            if his and rng.random() < MENTION_SHARE:
                                text = rng.choice(MENTIONS) + text
                            else:
                                text = text[0].upper() + text[1:]
                        written.append((actor, when.timestamp(), text))
                if not his:
                    for _ in range(int(rng.expovariate(1 / CROWD_COMMENT_MEAN))):
                        by = assignee if assignee is not None and rng.random() < 0.4 else author
                        when_s = created + rng.random() * max(0.0, end - created)
                        text = COMMENT_TEXTS[int(len(COMMENT_TEXTS) * rng.random() ** 1.5)]
                        written.append((by, when_s, text))
                    written.sort(key=lambda w: w[1])
                for by, when_s, text in written:
                    cid += 1
                    comment_copy.write_row((cid, rid, by, text, at(when_s, dt.UTC)))
                    # The other side is told (workers/desk/handlers.py: add_comment).
                    to = assignee if by == author else author
                    notice(when_s, to, by, rid, f"{users[by][1]} on #{rid} «{title}»: {text}")
                if his or rng.random() < CROWD_PHOTO_SHARE:
                    aid += 1
                    file_copy.write_row(
                        (
                            aid,
                            rid,
                            "photo",
                            f"AgACAgIAAxkBAAI{rid:09d}{rng.getrandbits(64):016x}",
                            f"AQAD{rid:09d}",
                            "image/jpeg",
                            rng.randint(60_000, 400_000),
                            at(created, dt.UTC),
                        )
                    )
                if updated >= cutoff:
                    notice(created, author, author, rid, f"Request #{rid} «{title}» is created.")
                    if accepted is not None and assignee is not None:
                        by_name = users[assignee][1]
                        notice(accepted, author, assignee, rid, f"#{rid}: accepted by {by_name}.")
                    if done is not None and assignee is not None:
                        notice(done, author, assignee, rid, f"#{rid} «{title}» is done.")
                        notice(done, assignee, assignee, rid, f"#{rid}: marked done.")
                if rid % 100_000 == 0 and time.monotonic() - last > 2:
                    last = time.monotonic()
                    out(
                        f"seed: requests {rid:>9,} read; comments {cid:,}, attachments {aid:,},"
                        f" outbox rows {len(notices):,} ({time.monotonic() - t0:.0f} s)"
                    )
        comments_conn.commit()
        files_conn.commit()
        counts.update(comments=cid, attachments=aid)
        out(f"seed: {cid:,} comments, {aid:,} attachments in {time.monotonic() - t0:.1f} s")

        # His own replies (lists, cards) and his broadcasts: two old ones (their rows pruned by
        # retention), one to everyone 7 days ago whose rows are still kept.
        for _ in range(HEAVY_REPLIES):
            t = anchor_s - rng.random() * OUTBOX_DAYS * DAY_S
            notices.append((t, HEAVY_TG, HEAVY_ID, HEAVY_ID, None, None, "Your requests, page 1"))
        sent_at = anchor_s - 7 * DAY_S
        broadcasts = [
            (1, HEAVY_ID, "everyone", "The lift in building 3 is back.", anchor_s - 200 * DAY_S),
            (2, HEAVY_ID, "staff", "Staff meeting on Monday at 9.", anchor_s - 60 * DAY_S),
            (3, HEAVY_ID, "everyone", BROADCAST_TEXT, sent_at),
            (4, 1, "residents", "Rubbish collection moves to Friday.", anchor_s - 90 * DAY_S),
        ]
        broadcast_rows = 0
        for uid, (tg, _) in sorted(users.items()):
            if tg is not None and uid != HEAVY_ID:
                t = sent_at + broadcast_rows / 30  # 30 messages a second
                notices.append((t, tg, uid, None, None, 3, BROADCAST_TEXT))
                broadcast_rows += 1
        reachable = sum(1 for tg, _ in users.values() if tg is not None)
        with comments_conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO broadcasts (id, author_id, audience, text, state, total, created_at,"
                " finished_at) VALUES (%s, %s, %s, %s, 'done', %s, %s, %s)",
                [
                    (bid, author, audience, text, reachable, at(t, dt.UTC), at(t + 3600, dt.UTC))
                    for bid, author, audience, text, t in broadcasts
                ],
            )
        notices.sort(key=lambda n: n[0])
        with comments_conn.cursor().copy(f"COPY outbox ({OUTBOX_COLUMNS}) FROM STDIN") as copy:
            for oid, (t, chat, user, actor, rid, batch, text) in enumerate(notices, start=1):
                pending = t > anchor_s - 60
                copy.write_row(
                    (
                        oid,
                        f"broadcast:{batch}:{user}" if batch else f"seed:{oid}:0",
                        chat,
                        user,
                        actor,
                        rid,
                        batch,
                        "sendMessage",
                        json.dumps({"chat_id": chat, "text": text, "parse_mode": "HTML"}),
                        "pending" if pending else "sent",
                        0 if pending else 1,
                        at(t, dt.UTC),
                        at(t, dt.UTC),
                        None if pending else at(t + 1, dt.UTC),
                    )
                )
        counts.update(outbox=len(notices), broadcast_rows=broadcast_rows)
        out(f"seed: {len(notices):,} outbox rows ({broadcast_rows:,} of his broadcast)")

        dead: list[tuple[Any, ...]] = []
        for k in range(DEAD_LETTERS):
            uid = HEAVY_ID if k % (DEAD_LETTERS // HEAVY_DEAD_LETTERS) == 0 else 10_000 + k
            tg = users[uid][0] or FIRST_TELEGRAM_ID + uid
            command = {
                "schema": 1,
                "idempotency_key": f"tg-update:{900_000 + k}",
                "actor": {"user_id": tg, "chat_id": tg, "first_name": users[uid][1]},
                "kind": "add_comment",
                "request_id": (k + 1) * 1000,
                "text": rng.choice(RESIDENT_TEXTS),
            }
            t = anchor_s - rng.random() * 90 * DAY_S
            key, body = command["idempotency_key"], json.dumps(command)
            dead.append(("commands.add_comment", key, body, "ValueError: bench", 3, at(t, dt.UTC)))
        with comments_conn.cursor().copy(
            "COPY dead_letters (task_name, idempotency_key, command, error, attempts, created_at)"
            " FROM STDIN"
        ) as copy:
            for row in dead:
                copy.write_row(row)
        counts.update(dead_letters=len(dead))

        # Report CSVs kept for 30 days: they name the assignees, him where he handled one.
        names = [users[s][1] for s in staff]
        files = []
        for k in range(34):
            weekly = k >= 30
            day = (anchor - dt.timedelta(days=(k - 29) * 7 if weekly else k + 1)).date()
            lines = ["id,created_at,status,priority,location,assignee,title"]
            for n in range(10_000 if weekly else 1_500):
                who = f"{HEAVY_FIRST} {HEAVY_LAST}" if rng.random() < 0.001 else rng.choice(names)
                lines.append(
                    f"{900_000 + n},{day}T10:00:00+00:00,done,normal,Yard,{who},Leaking tap"
                )
            kind = "weekly" if weekly else "daily"
            files.append(
                (
                    f"report:{kind}:{day}",
                    f"report-{kind}-{day}.csv",
                    ("\n".join(lines) + "\n").encode(),
                    at(anchor_s - (k + 1) * DAY_S / 2, dt.UTC),
                )
            )
        with comments_conn.cursor().copy(
            "COPY generated_files (key, file_name, content, created_at) FROM STDIN"
        ) as copy:
            for file_row in files:
                copy.write_row(file_row)
        counts.update(generated_files=len(files))
        comments_conn.commit()

    with psycopg.connect(info, autocommit=True) as admin:
        admin.execute("SET maintenance_work_mem = '512MB'")
        for name, sql in indexes:
            t1 = time.monotonic()
            admin.execute(sql)
            out(f"seed: index {name} in {time.monotonic() - t1:.1f} s")
        for table in (*tables, "broadcasts", "dead_letters", "generated_files"):
            admin.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        t1 = time.monotonic()
        admin.execute(
            "VACUUM (ANALYZE) comments, attachments, outbox, broadcasts, dead_letters,"
            " generated_files"
        )
        admin.execute("ANALYZE")
        out(f"seed: VACUUM (ANALYZE) and ANALYZE in {time.monotonic() - t1:.1f} s")
    return {"counts": dict(counts), "rest_s": round(time.monotonic() - t0, 1)}


def prepare_base(base: str, reseed: bool, shape: Shape) -> dict[str, Any]:
    """The base data set (seeded unless there already), its schema at head."""
    from zoneinfo import ZoneInfo

    from core.settings import get_settings
    from db import migrate

    wanted = {"version": report_seed.VERSION, "shape": shape.__dict__}
    marker = None if reseed or not exists(base) else read_marker(base)
    if (
        marker is not None
        and all(marker.get(k) == v for k, v in wanted.items())
        and marker.get("privacy", {}).get("version") == VERSION
    ):
        extra = marker["privacy"]
        print(
            f"data set: found in {database_name(base)} ({marker['counts']}; {extra['counts']};"
            f" anchor {marker['anchor']}; seeded in {extra['seed_s']} s); --reseed to make it"
            " again"
        )
        migrate.upgrade(base)
        return marker
    if "bench" not in database_name(base):
        raise SystemExit(f"refusing to drop and seed {database_name(base)!r}: not a bench database")
    print(f"data set: seeding {database_name(base)} (dropped and created)", flush=True)
    started = time.monotonic()
    create_database(base, drop=True)
    migrate.upgrade(base)

    def out(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {line}", flush=True)

    with mock.patch.object(report_seed, "Site", PrivacySite):
        marker = report_seed.seed(conninfo(base), shape, ZoneInfo(get_settings().timezone), out)
    extra = seed_rest(conninfo(base), marker, out)
    marker = {
        **marker,
        "privacy": {"version": VERSION, **extra, "seed_s": round(time.monotonic() - started, 1)},
    }
    write_marker(base, marker)
    out(f"seed: all done in {marker['privacy']['seed_s']} s")
    return marker


# --- Export, in a process of its own ---------------------------------------------------------


def export_worker(url: str, telegram_id: int, out_dir: str, repeat: int) -> dict[str, Any]:
    """Runs in a spawned process: its peak RSS is the export's (and the imports')."""
    from sqlalchemy import select, text
    from sqlalchemy.orm import Session

    from core.logging import configure_logging
    from db.models import User
    from db.session import configure_engine, make_engine
    from workers.privacy.export import write_export

    configure_logging("console", "ERROR")
    engine = make_engine(url, connect_args={"application_name": EXPORT_APP})
    configure_engine(engine)
    with Session(engine) as session:
        session.execute(text("SELECT 1"))
    in_driver = time_driver()
    result: dict[str, Any] = {"rss_imports_mb": vm_hwm_mb(), "runs": []}
    for k in range(repeat):
        path = Path(out_dir) / f"export-{k}.json"
        with Session(engine) as session:
            in_driver[0] = 0.0
            t0 = time.perf_counter()
            user = session.scalars(select(User).where(User.telegram_id == telegram_id)).one()
            count = write_export(session, user, path)
            session.rollback()
            seconds = time.perf_counter() - t0
        result["runs"].append(
            {
                "seconds": seconds,
                "in_driver": in_driver[0],
                "bytes": path.stat().st_size,
                "requests": count,
                "rss_mb": maxrss_mb(),
                "hwm_mb": vm_hwm_mb(),
                "path": str(path),
            }
        )
    engine.dispose()
    return result


def time_driver() -> list[float]:
    """Bench instrumentation: the time spent in psycopg's execute and fetch calls (a streamed
    query's FETCHes happen while the rows are iterated, outside SQLAlchemy's execute events)."""
    import psycopg

    spent = [0.0]
    depth = [0]

    def timed(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if not depth[0]:
                    spent[0] += time.perf_counter() - t0

        return wrapper

    for cls in (psycopg.Cursor, psycopg.ServerCursor):
        for name in ("execute", "fetchone", "fetchmany", "fetchall"):
            setattr(cls, name, timed(getattr(cls, name)))
    return spent


def run_export(url: str, telegram_id: int, out_dir: str, repeat: int) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(export_worker, url, telegram_id, out_dir, repeat).result()


def export_contents(path: Path) -> dict[str, int]:
    with path.open(encoding="utf-8") as f:
        doc = json.load(f)
    requests = doc["requests"]
    return {
        "requests": len(requests),
        "attachments": sum(len(r["attachments"]) for r in requests),
        "comments on them": sum(len(r["comments"]) for r in requests),
        "history on them": sum(len(r["history"]) for r in requests),
        "comments elsewhere": len(doc["comments_on_other_requests"]),
        "history elsewhere": len(doc["history_on_other_requests"]),
        "broadcasts": len(doc["broadcasts"]),
    }


# --- Erasure, in a process of its own --------------------------------------------------------


@dataclass
class Captured:
    sql: str
    seconds: float
    rows: int


def erasure_worker(pipe: Connection, url: str, telegram_id: int, mode: str) -> None:
    """Spawned: imports and connects, says "ready", erases on "go" and commits, sends the
    timings; on "replay <conninfo>" replays the statements under EXPLAIN on a fresh copy."""
    from sqlalchemy import event, text
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from core.domain import ErasureMode, ErasureReason
    from core.logging import configure_logging
    from db.session import configure_engine, make_engine
    from workers.privacy.erasure import scrub_step, unlink

    configure_logging("console", "ERROR")
    engine = make_engine(url, connect_args={"application_name": ERASURE_APP})
    configure_engine(engine)
    with Session(engine) as session:
        session.execute(text("SELECT 1"))
    captured: list[tuple[str, Any, bool, float, int]] = []
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(
        _conn: Any, cursor: Any, statement: str, parameters: Any, _ctx: Any, executemany: bool
    ) -> None:
        rows = cursor.rowcount if cursor.rowcount is not None else -1
        captured.append(
            (statement, parameters, executemany, time.perf_counter() - started.pop(), rows)
        )

    pipe.send("ready")
    assert pipe.recv() == "go"
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    first_begin = time.monotonic()
    failures: list[str] = []
    steps: list[float] = []  # each committed transaction's seconds, step one first
    begin_wall = time.time()
    begin = erased = committed = math.nan
    audit_id: int | None = None
    done = False
    captured.clear()
    while not done and len(failures) < ERASE_ATTEMPTS:
        with Session(engine) as session:
            t0 = time.monotonic()
            if audit_id is None:
                begin, begin_wall = t0, time.time()
            try:
                if audit_id is None:
                    made = unlink(
                        session, telegram_id, reason=ErasureReason.ADMIN, mode=ErasureMode(mode)
                    ).id
                    session.commit()
                    audit_id, erased = made, time.monotonic()
                else:
                    done = scrub_step(session, audit_id).done
                    session.commit()
                steps.append(time.monotonic() - t0)
            except OperationalError as exc:  # an outage to the worker: retried after 1 s
                session.rollback()
                lines = str(exc.orig or exc).splitlines()
                failures.append(
                    f"{'a step' if audit_id else 'step one'} failed after"
                    f" {time.monotonic() - t0:.2f} s: " + " | ".join(lines[:4])
                )
                pipe.send({"failed": failures[-1]})
                time.sleep(1.0)
    if done:
        committed = time.monotonic()
    counts: dict[str, int] = {}
    if audit_id is not None:
        with Session(engine) as session:
            counts = session.execute(
                text("SELECT counts FROM erasure_audit WHERE id = :id"), {"id": audit_id}
            ).scalar_one()
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)
    engine.dispose()
    pipe.send(
        {
            "first_begin": first_begin,
            "begin": begin,
            "begin_wall": begin_wall,
            "erased": erased,
            "committed": committed,
            "counts": counts,
            "failures": failures,
            "steps": steps,
            "statements": [Captured(s, sec, rows) for s, _, _, sec, rows in captured],
        }
    )
    message = pipe.recv()
    if isinstance(message, str) and message.startswith("replay "):
        pipe.send(replay(message.removeprefix("replay "), captured))


@dataclass
class Plan:
    sql: str
    explain_ms: float
    replay_ms: float  # all the executions of this statement in the replay
    rows: int
    scans: list[str]
    text: str


def replay(info: str, captured: list[tuple[str, Any, bool, float, int]]) -> list[Plan]:
    """The erasure's statements again, in order, in one transaction rolled back at the end:
    the first of each distinct statement under EXPLAIN (ANALYZE, BUFFERS), the rest plain."""
    import psycopg

    plans: dict[str, Plan] = {}
    with psycopg.connect(info) as conn:
        for sql, params, many, _, _ in captured:
            t0 = time.perf_counter()
            if many or sql in plans:
                with conn.cursor() as cur:
                    if many:
                        cur.executemany(sql, params)
                    else:
                        cur.execute(sql, params)
                if sql in plans:
                    plans[sql].replay_ms += (time.perf_counter() - t0) * 1000
                continue
            row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchone()
            assert row is not None
            doc = (json.loads(row[0]) if isinstance(row[0], str) else row[0])[0]
            # The text form of the same plan, from the JSON (running it twice would not do:
            # the first run changed the rows).
            top = doc["Plan"]
            plans[sql] = Plan(
                sql=sql,
                explain_ms=float(doc["Execution Time"]),
                replay_ms=(time.perf_counter() - t0) * 1000,
                rows=int(top.get("Actual Rows", 0)),
                scans=[s for s in map(scan_of, walk(top)) if s],
                text=json.dumps(doc, indent=1),
            )
        conn.rollback()
    return list(plans.values())


# --- Other users' commands meanwhile ---------------------------------------------------------


@dataclass
class Sample:
    group: str  # crowd | near
    kind: str
    start: float
    end: float
    error: str = ""

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


@dataclass
class Who:
    request_id: int
    telegram_id: int
    username: str | None
    first_name: str | None
    last_name: str | None
    language: str
    note: str = ""  # near: what ties the command to the erased user

    @classmethod
    def of(cls, row: Any, note: str = "") -> Who:
        request_id, telegram_id, username, first_name, last_name, language = row
        return cls(request_id, telegram_id, username, first_name, last_name, language, note)


@dataclass
class Traffic:
    samples: list[Sample] = field(default_factory=list)
    waits: list[tuple[float, str, str, float, str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def pick_targets(info: str) -> tuple[list[Who], list[Who]]:
    """Residents with an open request of their own that does not concern the heavy user, and
    the commands that do (a request he is assigned to, his own requests' staff)."""
    import psycopg

    columns = "r.id, u.telegram_id, u.username, u.first_name, u.last_name, u.language"
    with psycopg.connect(info) as conn:
        crowd = [
            Who.of(row)
            for row in conn.execute(
                f"SELECT {columns} FROM requests r JOIN users u ON u.id = r.author_id"
                " WHERE r.status = ANY(%(open)s) AND r.author_id <> %(h)s"
                " AND r.assignee_id IS DISTINCT FROM %(h)s AND u.role = 'resident'"
                " AND u.telegram_id IS NOT NULL ORDER BY r.id DESC LIMIT 2000",
                {"open": list(OPEN), "h": HEAVY_ID},
            )
        ]
        near = [
            Who.of(row, "resident, request assigned to him")
            for row in conn.execute(
                f"SELECT {columns} FROM requests r JOIN users u ON u.id = r.author_id"
                " WHERE r.status = ANY(%(open)s) AND r.assignee_id = %(h)s"
                " AND u.telegram_id IS NOT NULL ORDER BY r.id",
                {"open": list(OPEN), "h": HEAVY_ID},
            )
        ]
        near += [
            Who.of(row, "staff, his request")
            for row in conn.execute(
                f"SELECT {columns} FROM requests r JOIN users u ON u.id = r.assignee_id"
                " WHERE r.status = ANY(%(open)s) AND r.author_id = %(h)s ORDER BY r.id",
                {"open": list(OPEN[1:]), "h": HEAVY_ID},
            )
        ]
    return crowd, near


def drive(
    group: str, targets: list[Who], interval: float, tag: str, traffic: Traffic, thread: int
) -> None:
    """Apply commands of `targets` in turn, one per `interval`, until stopped."""
    from core import commands as c
    from core.clock import now
    from workers.command_runner import apply_command
    from workers.commands import HANDLERS

    n = 0
    due = time.monotonic()
    while not traffic.stop.is_set() and targets:
        who = targets[(n // 2) % len(targets)] if group == "crowd" else targets[n % len(targets)]
        actor = c.Actor(
            user_id=who.telegram_id,
            chat_id=who.telegram_id,
            language=who.language,
            username=who.username,
            first_name=who.first_name,
            last_name=who.last_name,
        )
        common: dict[str, Any] = {
            "idempotency_key": f"bench-privacy:{tag}:{group}{thread}:{n}",
            "actor": actor,
            "issued_at": now(),
        }
        command: c.Command
        if group == "crowd" and n % 2:
            command, kind = c.ShowMyRequests(**common), "ShowMyRequests"
        else:
            text = f"Any news? ({n})"
            command = c.AddComment(request_id=who.request_id, text=text, **common)
            kind = "AddComment" + (f" ({who.note})" if who.note else "")
        t0 = time.monotonic()
        error = ""
        try:
            apply_command(command, HANDLERS[type(command)])
        except Exception as exc:  # reported, the stream goes on
            error = f"{type(exc).__name__}: {exc}"[:200]
        traffic.samples.append(Sample(group, kind, t0, time.monotonic(), error))
        n += 1
        due += interval
        wait = due - time.monotonic()
        if wait > 0:
            traffic.stop.wait(wait)
        else:
            due = time.monotonic()


def sample_locks(info: str, traffic: Traffic) -> None:
    """Backends of this database waiting on a lock, every ~10 ms: (when, who, what lock, for
    how long the statement has run, the statement, who blocks it)."""
    import psycopg

    query = (
        "SELECT a.application_name, a.wait_event,"
        " extract(epoch FROM clock_timestamp() - a.query_start)::float8,"
        " left(regexp_replace(a.query, '\\s+', ' ', 'g'), 90),"
        " (SELECT string_agg(DISTINCT b.application_name, ',') FROM pg_stat_activity b"
        "  WHERE b.pid = ANY(pg_blocking_pids(a.pid)))"
        " FROM pg_stat_activity a WHERE a.datname = current_database()"
        " AND a.wait_event_type = 'Lock' AND a.pid <> pg_backend_pid()"
    )
    with psycopg.connect(info, autocommit=True) as conn:
        while not traffic.stop.is_set():
            when = time.monotonic()
            for app, event, running, sql, blockers in conn.execute(query):
                traffic.waits.append((when, app, event, running, sql, blockers or "?"))
            traffic.stop.wait(0.01)


def near_worker(pipe: Connection, url: str, targets: list[Who], interval: float, tag: str) -> None:
    """Spawned: the commands that touch the erased user's rows, under an application name of
    their own (pg_stat_activity tells them apart from the others' commands)."""
    from core.heap import freeze_startup_heap
    from core.logging import configure_logging
    from db.session import configure_engine, make_engine
    from workers import command_runner, commands

    del command_runner, commands  # imported before the clock starts
    configure_logging("console", "ERROR")
    engine = make_engine(url, connect_args={"application_name": NEAR_APP})
    configure_engine(engine)
    freeze_startup_heap()
    traffic = Traffic()
    pipe.send("ready")
    assert pipe.recv() == "go"
    runner = threading.Thread(target=drive, args=("near", targets, interval, tag, traffic, 0))
    runner.start()
    assert pipe.recv() == "stop"
    traffic.stop.set()
    runner.join(30)
    engine.dispose()
    pipe.send(traffic.samples)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {percentile(values, 0.5):.1f} / p95 {percentile(values, 0.95):.1f} / max"
        f" {max(values):.1f} ms (n={len(values)})"
    )


# --- What is left of him -----------------------------------------------------------------------


def leftovers(info: str, since: dt.datetime) -> list[tuple[str, int, int]]:
    """(table.column, rows holding his Telegram id or a name, of which created since `since`:
    by a transaction that began after the erasure did) for every column of every table."""
    import psycopg

    out = []
    with psycopg.connect(info) as conn:
        columns = conn.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
            " AND c.table_name <> 'alembic_version' ORDER BY 1, 2"
        ).fetchall()
        has_created = {t for t, col, _ in columns if col == "created_at"}
        params: dict[str, Any]
        for table, column, kind in columns:
            if kind in ("bigint", "integer"):
                where, params = f'"{column}" = %(tg)s', {"tg": HEAVY_TG}
            elif kind in ("text", "character varying", "jsonb", "json"):
                where = f'"{column}"::text ILIKE ANY(%(needles)s)'
                params = {"needles": [f"%{n}%" for n in HEAVY_NEEDLES]}
            elif kind == "bytea":
                where = f"encode(\"{column}\", 'escape') ILIKE ANY(%(needles)s)"
                params = {"needles": [f"%{n}%" for n in HEAVY_NEEDLES]}
            else:
                continue
            late = "count(*) FILTER (WHERE created_at > %(since)s)" if table in has_created else "0"
            row = conn.execute(
                f'SELECT count(*), {late} FROM "{table}" WHERE {where}',
                {**params, "since": since},
            ).fetchone()
            if row and row[0]:
                out.append((f"{table}.{column}", int(row[0]), int(row[1])))
    return out


# --- Main --------------------------------------------------------------------------------------


def statement_name(sql: str) -> str:
    s = " ".join(sql.split())
    head = s.split(" WHERE ", 1)
    verb = head[0][:60]
    where = head[1][:70] if len(head) > 1 else ""
    return f"{verb} WHERE {where}" if where else verb


def print_table(title: str, head: list[str], rows: list[list[str]], right: int = 1) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for i, name in enumerate(head):
        table.add_column(name, justify="right" if i >= right else "left", overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=170, highlight=False, soft_wrap=False).print(table)
    sys.stdout.flush()


def ratio(measured: float, target: float) -> str:
    return "-" if math.isnan(measured) or not target else f"{measured / target:.2f}x"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.privacy", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--reseed", action="store_true", help="make the base data set again")
    parser.add_argument("--mode", choices=("anonymize", "delete"), default="anonymize")
    parser.add_argument("--threads", type=int, default=4, help="other users' command streams")
    parser.add_argument(
        "--interval", type=float, default=0.25, help="seconds between a stream's commands"
    )
    parser.add_argument(
        "--near-interval",
        type=float,
        default=1.0,
        help="seconds between the commands that touch the erased user's rows",
    )
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds, not measured")
    parser.add_argument("--around", type=float, default=2.0, help="seconds before and after")
    parser.add_argument("--no-explain", action="store_true", help="skip the EXPLAIN replay")
    parser.add_argument("--no-scan", action="store_true", help="skip the leftover scan")
    parser.add_argument(
        "--requests",
        type=int,
        default=1_000_000,
        help="data set size (1 in 100 his); a smaller one wants its own BENCH_PRIVACY_URL",
    )
    return parser.parse_args(argv)


def start_eraser(url: str, mode: str) -> tuple[Any, Connection]:
    """The erasure's process, imported, connected and waiting for "go"."""
    ctx = get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(target=erasure_worker, args=(theirs, url, HEAVY_TG, mode), daemon=True)
    process.start()
    assert ours.recv() == "ready"
    return process, ours


def export_once(url: str, label: str) -> dict[str, Any]:
    out_dir = tempfile.mkdtemp(prefix="bench-privacy-export-")
    exported = run_export(url, HEAVY_TG, out_dir, repeat=2)
    first, second = exported["runs"]
    exported["contents"] = export_contents(Path(first["path"]))
    for run in exported["runs"]:
        Path(run["path"]).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(out_dir).rmdir()
    print(
        f"export ({label}): {first['seconds']:.2f} s, {first['in_driver']:.2f} s of it in the"
        f" driver (again in the same process: {second['seconds']:.2f} s,"
        f" {second['in_driver']:.2f} s), {first['bytes'] / 1e6:.1f} MB, peak RSS (VmHWM)"
        f" {second['hwm_mb']:.0f} MB (after imports {exported['rss_imports_mb']:.0f}, after the"
        f" first export {first['hwm_mb']:.0f}; ru_maxrss {second['rss_mb']:.0f}); contents: "
        + ", ".join(f"{k} {v:,}" for k, v in exported["contents"].items()),
        flush=True,
    )
    return exported


@dataclass
class Erased:
    first_begin: float
    begin: float  # step one's start (its last attempt)
    erased: float  # step one's commit: nothing identifies the user any more
    committed: float  # the last step's commit (NaN: gave up after failures)
    begin_wall: float
    counts: dict[str, int]
    failures: list[str]
    steps: list[float]  # each step's transaction, seconds (step one first)
    statements: list[Captured]
    committed_or_gave_up: float = math.nan  # when the last attempt failed, if none committed

    @property
    def wall(self) -> float:
        """Step one, from the call to the commit: the identity unlinked."""
        return self.erased - self.begin

    @property
    def overall(self) -> float:
        """From the first call to the last step's commit, failed attempts and waits included."""
        return self.committed - self.first_begin

    @property
    def longest_step(self) -> float:
        return max(self.steps[1:], default=math.nan)

    @property
    def in_sql(self) -> float:
        return sum(s.seconds for s in self.statements)

    def line(self, label: str) -> str:
        failed = "".join(f"\n  {f}" for f in self.failures)
        if math.isnan(self.committed):
            return f"erasure ({label}): gave up after {len(self.failures)} failures{failed}"
        return (
            f"erasure ({label}): identity unlinked in {self.wall:.3f} s (step one, call to"
            f" commit); scrubbed to the end {self.overall:.2f} s after the call in"
            f" {len(self.steps) - 1} steps (longest {self.longest_step:.3f} s),"
            f" {len(self.failures)} failed and retried; {len(self.statements):,} statements,"
            f" {self.in_sql:.2f} s in SQL; counts: {self.counts}{failed}"
        )


def erase_with_traffic(
    url: str, info: str, args: argparse.Namespace, tag: str
) -> tuple[Erased, Traffic, float, float]:
    """The erasure, with the others' commands (threads here) and the near ones (a process of
    their own) running from a warm-up before it to `args.around` after its commit."""
    crowd, near = pick_targets(info)
    print(
        f"traffic: {args.threads} threads x 1 command / {args.interval * 1000:.0f} ms"
        f" ({args.threads / args.interval:.0f} commands/s offered) over {len(crowd):,} open"
        f" requests of residents; near: 1 command / {args.near_interval * 1000:.0f} ms over"
        f" {len(near)} targets"
        f" ({dict(Counter(w.note for w in near))})",
        flush=True,
    )
    eraser, pipe = start_eraser(url, args.mode)
    ctx = get_context("spawn")
    near_ours, near_theirs = ctx.Pipe()
    interval = args.near_interval
    neighbour = ctx.Process(
        target=near_worker, args=(near_theirs, url, near, interval, tag), daemon=True
    )
    neighbour.start()
    assert near_ours.recv() == "ready"

    from core.heap import freeze_startup_heap
    from db.session import configure_engine, dispose_engine, make_engine
    from workers import command_runner, commands

    del command_runner, commands  # imported before the clock starts
    engine = make_engine(url, connect_args={"application_name": CROWD_APP})
    configure_engine(engine)
    freeze_startup_heap()  # as a worker does once started (core/heap.py)
    traffic = Traffic()
    threads = [
        threading.Thread(
            target=drive,
            args=("crowd", crowd[k :: args.threads], args.interval, tag, traffic, k),
            daemon=True,
        )
        for k in range(args.threads)
    ]
    threads.append(threading.Thread(target=sample_locks, args=(info, traffic), daemon=True))
    near_stopped = False
    try:
        for thread in threads:
            thread.start()
        near_ours.send("go")
        time.sleep(args.warmup)
        measured_from = time.monotonic()
        time.sleep(args.around)
        print(f"load average before the erasure: {load()}", flush=True)
        pipe.send("go")
        while "failed" in (message := pipe.recv()):
            print(f"erasure (with traffic): {message['failed']}", flush=True)
            if not near_stopped:  # the retries run with the others' traffic alone
                near_ours.send("stop")
                near_stopped = True
        erased = Erased(**message)
        if math.isnan(erased.committed):
            erased.committed_or_gave_up = time.monotonic()
        time.sleep(args.around)
    finally:
        traffic.stop.set()
        if not near_stopped:
            near_ours.send("stop")
        for thread in threads:
            thread.join(30)
        if near_ours.poll(30):
            traffic.samples += near_ours.recv()
        neighbour.join(5)
        pipe.send("exit")
        eraser.join(30)
        for process in (neighbour, eraser):
            if process.is_alive():
                process.terminate()
        engine.dispose()
        dispose_engine()
    measured_to = time.monotonic()
    return erased, traffic, measured_from, measured_to


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" (on {os.cpu_count()} cpus)"


def code_version() -> str:
    import hashlib

    parts = []
    for name in ("erasure.py", "export.py"):
        path = ROOT / "workers" / "privacy" / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%H:%M:%S")
        parts.append(f"{name} {digest} (modified {stamp} UTC)")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    base = os.environ.get("BENCH_PRIVACY_URL") or BASE_URL
    run_url = url_for(base, database_name(base) + "_run")
    var_dir = Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    os.environ.update(
        DATABASE_URL=run_url,
        VAR_DIR=str(var_dir),
        LOG_LEVEL="ERROR",
        LOG_FORMAT="console",
        ERASURE_MODE=args.mode,
    )
    os.environ.pop("REDIS_URL", None)
    from core.logging import configure_logging
    from core.settings import get_settings

    get_settings.cache_clear()
    configure_logging("console", "ERROR")
    print(f"$ {shlex.join([Path(sys.executable).name, '-m', 'bench.privacy', *sys.argv[1:]])}")
    print(
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, cpus: {os.cpu_count()},"
        f" base: {database_name(base)}, run database: {database_name(run_url)}, mode:"
        f" {args.mode}, VAR_DIR: {var_dir} (REDIS_URL unset)"
    )
    print(f"code under test: {code_version()}; load average {load()}")
    marker = prepare_base(base, args.reseed, Shape(requests=args.requests))
    print(f"data set anchor (its 'now'): {marker['anchor']}")
    info = conninfo(run_url)

    def fresh_copy(why: str) -> None:
        t0 = time.monotonic()
        admin_execute(run_url, f'DROP DATABASE IF EXISTS "{database_name(run_url)}" WITH (FORCE)')
        if not copy_database(base, run_url, tries=5):
            raise SystemExit(f"{database_name(base)} is busy: cannot copy it")
        print(f"run database ({why}): copied in {time.monotonic() - t0:.1f} s", flush=True)

    # 1. A copy: export, then the erasure with other users' commands around it.
    fresh_copy("export, erasure with traffic")
    sizes = table_counts(info)
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()), flush=True)
    heavy = heavy_counts(info)
    print("the heavy user (#3): " + ", ".join(f"{k} {v:,}" for k, v in heavy.items()), flush=True)
    exports = [export_once(run_url, "copy 1")]
    tag = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    erased, traffic, measured_from, measured_to = erase_with_traffic(run_url, info, args, tag)
    print(erased.line("with traffic"), flush=True)
    since = dt.datetime.fromtimestamp(
        erased.begin_wall - (erased.begin - erased.first_begin), dt.UTC
    )
    left = [] if args.no_scan else leftovers(info, since)

    # 2. Another copy: export again, then the erasure alone; its statements replayed under
    # EXPLAIN on a third.
    fresh_copy("export, erasure alone")
    exports.append(export_once(run_url, "copy 2"))
    eraser, pipe = start_eraser(run_url, args.mode)
    pipe.send("go")
    alone = Erased(**pipe.recv())
    print(alone.line("alone"), flush=True)
    plans: list[Plan] = []
    if args.no_explain:
        pipe.send("exit")
    else:
        fresh_copy("EXPLAIN replay")
        pipe.send(f"replay {info}")
        plans = pipe.recv()
    eraser.join(60)
    report(args, exports, erased, alone, traffic, (measured_from, measured_to), plans, left)
    print(f"whole run {time.monotonic() - started:.0f} s")
    with contextlib.suppress(OSError):
        var_dir.rmdir()
    return 0


def report(
    args: argparse.Namespace,
    exports: list[dict[str, Any]],
    erased: Erased,
    alone: Erased,
    traffic: Traffic,
    measured: tuple[float, float],
    plans: list[Plan],
    left: list[tuple[str, int, int]],
) -> None:
    # The window the others' commands are judged in: from the first attempt (failed ones and
    # their retry waits included) to the commit.
    begin = erased.first_begin
    committed = erased.committed_or_gave_up if math.isnan(erased.committed) else erased.committed

    def window(s: Sample) -> str:
        if s.end < measured[0] or s.start > measured[1]:
            return "warm-up"
        return "during" if s.start < committed and s.end > begin else "outside"

    by: dict[tuple[str, str], list[float]] = {}
    kinds: dict[tuple[str, str], list[float]] = {}
    errors: Counter[str] = Counter()
    for s in traffic.samples:
        where = window(s)
        if where == "warm-up":
            continue
        by.setdefault((s.group, where), []).append(s.ms)
        kinds.setdefault((f"{s.group}: {s.kind}", where), []).append(s.ms)
        if s.error:
            errors[f"{s.group} {s.kind}: {s.error}"] += 1
    crowd_waits = [w for w in traffic.waits if w[1] == CROWD_APP]
    waited = Counter(f"{w[1] or '?'} on {w[2]} (blocked by {w[5]})" for w in traffic.waits)
    longest: dict[str, float] = {}
    for w in traffic.waits:
        key = f"{w[1] or '?'}: {w[4]}"
        longest[key] = max(longest.get(key, 0.0), w[3])

    crowd_during = by.get(("crowd", "during"), [])
    crowd_outside = by.get(("crowd", "outside"), [])
    worst = max(crowd_during, default=math.nan)
    firsts = [e["runs"][0]["seconds"] for e in exports]
    export_s = max(firsts)
    export_mb = max(e["runs"][-1]["hwm_mb"] for e in exports)
    file = exports[0]["runs"][0]
    print()

    def met(ok: bool) -> str:
        return "yes" if ok else "NO"

    rows = [
        [
            "export: write_export, first in its process",
            " / ".join(f"{s:.2f}" for s in firsts) + " s (copy 1 / copy 2)",
            f"< {TARGET_EXPORT_S:.0f} s",
            ratio(export_s, TARGET_EXPORT_S),
            met(export_s < TARGET_EXPORT_S),
        ],
        [
            "export: again in the same process",
            " / ".join(f"{e['runs'][1]['seconds']:.2f}" for e in exports) + " s",
            "",
            "",
            "",
        ],
        [
            "export: peak RSS, VmHWM (imports included)",
            f"{export_mb:.0f} MB (after imports {exports[0]['rss_imports_mb']:.0f})",
            f"< {TARGET_EXPORT_MB:.0f} MB",
            ratio(export_mb, TARGET_EXPORT_MB),
            met(export_mb < TARGET_EXPORT_MB),
        ],
        [
            "export: file",
            f"{file['bytes'] / 1e6:.1f} MB, {file['requests']:,} requests",
            "",
            "",
            "",
        ],
        [
            "erasure with traffic: identity unlinked (step one)",
            f"{erased.wall:.3f} s",
            f"< {TARGET_ERASE_S:.0f} s",
            ratio(erased.wall, TARGET_ERASE_S),
            met(erased.wall < TARGET_ERASE_S),
        ],
        [
            "  scrubbed to the end: from the call / steps",
            f"{erased.overall:.2f} s / {len(erased.steps) - 1}",
            "",
            "",
            "",
        ],
        [
            "  longest step (a transaction's locks held)",
            f"{erased.longest_step:.3f} s",
            f"< {TARGET_ERASE_S:.0f} s",
            ratio(erased.longest_step, TARGET_ERASE_S),
            met(erased.longest_step < TARGET_ERASE_S),
        ],
        [
            "  in SQL / statements",
            f"{erased.in_sql:.2f} s / {len(erased.statements):,}",
            "",
            "",
            "",
        ],
        [
            "  steps that failed (retried after 1 s)",
            f"{len(erased.failures)}",
            "0",
            "",
            met(not erased.failures),
        ],
        [
            "erasure alone: identity unlinked (step one)",
            f"{alone.wall:.3f} s",
            f"< {TARGET_ERASE_S:.0f} s",
            ratio(alone.wall, TARGET_ERASE_S),
            met(alone.wall < TARGET_ERASE_S),
        ],
        [
            "  scrubbed to the end: from the call / steps / longest",
            f"{alone.overall:.2f} s / {len(alone.steps) - 1} / {alone.longest_step:.3f} s",
            "",
            "",
            "",
        ],
        ["  in SQL / statements", f"{alone.in_sql:.2f} s / {len(alone.statements):,}", "", "", ""],
        [
            "others' commands during the erasure: max",
            f"{worst:.1f} ms",
            f"< {TARGET_OTHERS_MS:.0f} ms",
            ratio(worst, TARGET_OTHERS_MS),
            "n/a" if math.isnan(worst) else met(worst < TARGET_OTHERS_MS),
        ],
        ["others' commands during the erasure", latency(crowd_during), "", "", ""],
        [
            f"others' commands outside it ({args.around:.0f} s each side)",
            latency(crowd_outside),
            "",
            "",
            "",
        ],
        [
            "others' commands waiting on a lock (sampled)",
            f"{len(crowd_waits)} samples",
            "0",
            "",
            met(not crowd_waits),
        ],
        [
            "near commands (his rows) during",
            latency(by.get(("near", "during"), [])),
            "info",
            "",
            "",
        ],
        ["near commands outside", latency(by.get(("near", "outside"), [])), "info", "", ""],
    ]
    print_table("Targets", ["measure", "measured", "target", "ratio", "met"], rows)
    print_table(
        "Latency by command (ms)",
        ["command", "during the erasure", "outside it"],
        [
            [k, latency(kinds.get((k, "during"), [])), latency(kinds.get((k, "outside"), []))]
            for k in sorted({k for k, _ in kinds})
        ],
    )
    print_table(
        "Rows touched by the erasure (its counts)",
        ["kind", "rows"],
        [[k, f"{v:,}"] for k, v in sorted(erased.counts.items())],
    )
    print(
        f"lock waits sampled every ~10 ms: {len(traffic.waits)};"
        f" by who and on what: {dict(waited) or 'none'}"
    )
    for key, seconds in sorted(longest.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  its statement had run {seconds * 1000:.0f} ms when last seen waiting: {key}")
    if errors:
        print(f"command errors: {dict(errors)}")

    # The statements, grouped by their text, slowest first (in the run alone).
    def grouped(statements: list[Captured]) -> dict[str, list[Captured]]:
        out: dict[str, list[Captured]] = {}
        for captured in statements:
            out.setdefault(captured.sql, []).append(captured)
        return out

    quiet, busy = grouped(alone.statements), grouped(erased.statements)
    plan_of = {p.sql: p for p in plans}
    srows = []
    for sql, runs in sorted(quiet.items(), key=lambda kv: -sum(r.seconds for r in kv[1])):
        plan = plan_of.get(sql)
        srows.append(
            [
                statement_name(sql),
                f"{len(runs):,}",
                f"{sum(r.seconds for r in runs) * 1000:.1f}",
                f"{sum(r.seconds for r in busy.get(sql, [])) * 1000:.1f}",
                f"{sum(max(r.rows, 0) for r in runs):,}",
                f"{plan.explain_ms:.1f}" if plan else "-",
                "; ".join(plan.scans) if plan else "",
            ]
        )
    print_table(
        f"The erasure's statements (alone: SQL {alone.in_sql:.2f} s of {alone.wall:.2f} s, the"
        " rest is Python between them)",
        ["statement", "times", "ms alone", "ms w/ traffic", "rows", "EXPLAIN ms", "plan's scans"],
        srows,
    )
    if plans:
        PLANS.parent.mkdir(parents=True, exist_ok=True)
        with PLANS.open("w", encoding="utf-8") as f:
            for p in sorted(plans, key=lambda p: -p.explain_ms):
                f.write(f"-- {p.explain_ms:.1f} ms, {p.rows:,} rows\n{p.sql}\n\n{p.text}\n\n")
        print(f"full plans (JSON): {PLANS.relative_to(ROOT)}")
    if not args.no_scan:
        print_table(
            "What is left of him after the erasure with traffic (his Telegram id or names)",
            ["column", "rows", "of which created since the erasure began"],
            [[c, f"{n:,}", f"{late:,}"] for c, n, late in left] or [["none", "0", "0"]],
        )
    print(
        f"others' commands: {len(crowd_during)} overlapped the erasure, {len(crowd_outside)}"
        f" ran outside it ({args.around:.1f} s before and after)."
    )
    ok = (
        export_s < TARGET_EXPORT_S
        and export_mb < TARGET_EXPORT_MB
        and erased.wall < TARGET_ERASE_S
        and erased.longest_step < TARGET_ERASE_S
        and worst < TARGET_OTHERS_MS
        and not crowd_waits
    )
    print(
        f"targets (erasure < {TARGET_ERASE_S:.0f} s, others < {TARGET_OTHERS_MS:.0f} ms and no"
        f" lock waits, export < {TARGET_EXPORT_S:.0f} s and < {TARGET_EXPORT_MB:.0f} MB):"
        f" {'MET' if ok else 'MISSED'}"
    )


def heavy_counts(info: str) -> dict[str, int]:
    import psycopg

    queries = {
        "requests": "SELECT count(*) FROM requests WHERE author_id = %(h)s",
        "attachments": "SELECT count(*) FROM attachments a JOIN requests r ON r.id = a.request_id"
        " WHERE r.author_id = %(h)s",
        "comments by him": "SELECT count(*) FROM comments WHERE author_id = %(h)s",
        "comments of others on his requests": "SELECT count(*) FROM comments c JOIN requests r"
        " ON r.id = c.request_id WHERE r.author_id = %(h)s AND c.author_id <> %(h)s",
        "events by him": "SELECT count(*) FROM request_events WHERE actor_id = %(h)s",
        "events on his requests": "SELECT count(*) FROM request_events e JOIN requests r"
        " ON r.id = e.request_id WHERE r.author_id = %(h)s",
        "requests assigned to him": "SELECT count(*) FROM requests WHERE assignee_id = %(h)s",
        "outbox to/by/about him": "SELECT count(*) FROM outbox WHERE chat_id = %(tg)s"
        " OR user_id = %(h)s OR actor_id = %(h)s OR request_id IN (SELECT id FROM requests"
        " WHERE author_id = %(h)s) OR batch_id IN (SELECT id FROM broadcasts"
        " WHERE author_id = %(h)s)",
    }
    with psycopg.connect(info) as conn:
        out = {}
        for name, sql in queries.items():
            row = conn.execute(sql, {"h": HEAVY_ID, "tg": HEAVY_TG}).fetchone()
            out[name] = int(row[0]) if row else -1
    return out


if __name__ == "__main__":
    sys.exit(main())
