"""The reports benchmark's data set: a site's two years of requests, generated deterministically
and streamed into PostgreSQL with COPY (bench/reports.py runs it).

Shape (defaults): 100,000 users (3 admins, 300 staff, the rest residents), 1,000,000 requests
over the `days` before the anchor (the seeding's "now"), volume growing by `growth` across the
span, lower at weekends and higher in winter, by local hour of day; ~100 locations and the
authors Zipf-like skewed, priorities skewed towards normal. Each request lives its life through
the project's status machine (core.domain.TRANSITIONS), with lognormal delays by priority:

    created -> accept -> start -> done [-> rated]        ~91% (1.5% reopened once, redone)
    created -> cancel (by the author, while new)          5%
    created -> reject (while new, or 0.5% in progress)    ~4%

and what had not happened by the anchor has not happened: recent requests are open, which
keeps the open backlog at what a day and a bit of the site's volume makes (a few thousand),
plus a thin tail of requests left for weeks. Columns follow the history exactly as the
handlers set them (workers/desk/handlers.py): accepted_at is the last accept, done_at is
cleared by a reopen, closed_at is set by reject/cancel, version counts the row's writes.

Events come out in time order (their ids grow with created_at, as in production) through a
heap of the ones not yet due, which holds a few days' worth; requests and events stream on two
connections at once, never a list of either in memory.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import time
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

# Bump when the generator changes: a database seeded by another version is reseeded.
VERSION = 1
DAY_S = 86_400
FIRST_TELEGRAM_ID = 10_000_000


@dataclass(frozen=True)
class Shape:
    requests: int = 1_000_000
    users: int = 100_000
    staff: int = 300
    admins: int = 3
    days: int = 730
    locations: int = 100
    growth: float = 0.6  # the last day's volume is 1 + growth times the first day's
    seed: int = 20_261_201

    @property
    def residents(self) -> int:
        return self.users - self.staff - self.admins


@dataclass
class Counts:
    users: int = 0
    requests: int = 0
    events: int = 0
    open: int = 0
    rated: int = 0


# --- The site's vocabulary -----------------------------------------------------------------------

TITLES = (
    "Leaking tap",
    "No hot water",
    "Light out in the stairwell",
    "Lift not working",
    "Broken door lock",
    "Clogged drain",
    "Radiator cold",
    "Window will not close",
    "Intercom broken",
    "Rubbish not collected",
    "Water on the floor",
    "Smell of gas",
    "Broken mailbox",
    "Graffiti on the wall",
    "Loose handrail",
    "Socket sparks",
    "Noise from the pipes",
    "Mould on the ceiling",
    "Door closer broken",
    "Snow not cleared",
    "Parking barrier stuck",
    "Pest control needed",
    "Roof leaking",
    "Broken glass",
    "Doorbell not working",
)
DETAILS = (
    "Please check as soon as you can.",
    "It started yesterday evening.",
    "Second time this month.",
    "Neighbours have noticed it too.",
    "Photo attached.",
    "Happens every morning.",
    "",
)
REJECT_REASONS = (
    "Not the building's responsibility",
    "Duplicate of an open request",
    "The tenant's own appliance",
    "For the city utility, number sent",
)
FIRST_NAMES = ("Anna", "Boris", "Olga", "Ivan", "Maria", "Pavel", "Elena", "Sergei", "Nina")
LAST_NAMES = ("Ivanova", "Petrov", "Smirnova", "Kuznetsov", "Popova", "Volkov", "Sokolova")
PLACES = ("entrance", "stairwell", "lift", "basement", "roof", "flat")


def locations(n: int, rng: random.Random) -> list[str]:
    """n distinct places, in a fixed shuffled order (the first is the most frequent)."""
    names = [f"Building {b}, {p}" for b in range(1, 13) for p in PLACES]
    names += ["Yard", "Playground", "Parking", "Laundry", "Bike room", "Office", "Gate"]
    k = 1
    while len(names) < n:
        names.append(f"Building {k % 12 + 1}, flat {100 + k}")
        k += 1
    names = names[:n]
    rng.shuffle(names)
    return names


def cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def picker(rng: random.Random, weights: list[float]) -> Callable[[], int]:
    """An index drawn by weight (bisect on the cumulative weights: no list per draw)."""
    cum = cumulative(weights)
    total, last = cum[-1], len(cum) - 1
    rand = rng.random

    def pick() -> int:
        return min(bisect(cum, rand() * total), last)

    return pick


# Local hour of day -> relative volume of new requests.
HOURLY: tuple[float, ...] = (1, 0.5, 0.3, 0.3, 0.3, 0.5, 1.5, 3, 5, 6, 6, 6, 5.5, 5.5, 5.5, 5.5)
HOURLY += (6, 6.5, 7, 7, 6, 5, 3.5, 2)
PRIORITIES = ("low", "normal", "high", "urgent")
PRIORITY_WEIGHTS = [0.15, 0.65, 0.15, 0.05]
# Median delays in seconds by priority: to accept, accept to start, start to done.
TO_ACCEPT = {"urgent": 900, "high": 2700, "normal": 9000, "low": 21600}
TO_START = {"urgent": 600, "high": 1800, "normal": 7200, "low": 21600}
TO_DONE = {"urgent": 5400, "high": 18000, "normal": 50400, "low": 108000}
RATINGS = (5, 4, 3, 2, 1)
RATING_WEIGHTS = [0.50, 0.25, 0.12, 0.06, 0.07]


# --- Generating ----------------------------------------------------------------------------------

# (t, action, from_status, to_status, actor_id, note)
Event = tuple[float, str, str | None, str | None, int | None, str | None]


class Site:
    """The generator: users first, then requests in time order, each with its history."""

    def __init__(self, shape: Shape, anchor: datetime, tz: ZoneInfo) -> None:
        self.shape = shape
        self.anchor = anchor.timestamp()
        self.start = self.anchor - shape.days * DAY_S
        self.tz_offset = (anchor.astimezone(tz).utcoffset() or timedelta()).total_seconds()
        self.rng = random.Random(shape.seed)
        rng = self.rng
        self.places = locations(shape.locations, rng)
        self.pick_place = picker(rng, [1 / (k + 1) ** 1.1 for k in range(len(self.places))])
        self.pick_priority = picker(rng, PRIORITY_WEIGHTS)
        self.pick_rating = picker(rng, RATING_WEIGHTS)
        self.first_staff = shape.admins + 1
        self.first_resident = self.first_staff + shape.staff
        # Some staff take much more work than others.
        self.pick_staff = picker(rng, [1 / (k + 1) ** 0.5 for k in range(shape.staff)])
        self.hourly_max = max(HOURLY)

    def user_rows(self) -> Iterator[tuple[Any, ...]]:
        """Users as COPY rows (id .. erased_at)."""
        s, rng = self.shape, self.rng
        for uid in range(1, s.users + 1):
            if uid < self.first_staff:
                role = "admin"
            elif uid < self.first_resident:
                role = "staff"
            else:
                role = "resident"
            created = self._at(self.start - rng.uniform(1, 365) * DAY_S)
            first: str | None = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES) if role != "resident" or rng.random() < 0.5 else None
            username = f"user{uid}" if rng.random() < 0.6 else None
            language = "ru" if rng.random() < 0.3 else "en"
            telegram_id: int | None = FIRST_TELEGRAM_ID + uid
            erased = None
            if role == "resident" and rng.random() < 0.005:  # erased on request: no identity
                telegram_id, username, first, last = None, None, None, None
                erased = self._at(self.anchor - rng.uniform(1, 300) * DAY_S)
            yield (
                uid,
                telegram_id,
                username,
                first,
                last,
                language,
                role,
                True,
                created,
                erased or created,
                erased,
            )

    def day_counts(self) -> list[int]:
        """Requests per 24 h window (the last one ends at the anchor), summing to exactly N."""
        s = self.shape
        weights = []
        for d in range(s.days):
            local = datetime.fromtimestamp(self.start + d * DAY_S + self.tz_offset, UTC)
            trend = 1 + s.growth * d / max(1, s.days - 1)
            weekend = 0.75 if local.weekday() >= 5 else 1.0
            winter = 1 + 0.15 * math.cos(2 * math.pi * (local.timetuple().tm_yday - 15) / 365)
            weights.append(trend * weekend * winter)
        total, cum, counts, done = sum(weights), 0.0, [], 0
        for w in weights:
            cum += w
            upto = round(cum / total * s.requests)
            counts.append(upto - done)
            done = upto
        return counts

    def created_times(self) -> Iterator[float]:
        """Every request's creation time, in order: each day's drawn by local hour, sorted."""
        rng = self.rng
        for d, n in enumerate(self.day_counts()):
            day0 = self.start + d * DAY_S
            times: list[float] = []
            while len(times) < n:
                t = day0 + rng.random() * DAY_S
                hour = int((t + self.tz_offset) // 3600) % 24
                if rng.random() * self.hourly_max < HOURLY[hour]:
                    times.append(t)
            times.sort()
            yield from times

    def _delay(self, median: float, sigma: float = 1.0) -> float:
        return max(30.0, median * math.exp(sigma * self.rng.gauss(0.0, 1.0)))

    def life(self, created: float, priority: str, author: int) -> list[Event]:
        """A request's whole history, as it would go on (cut at the anchor by the caller)."""
        delay, r = self._delay, self.rng
        events: list[Event] = [(created, "created", None, "new", author, None)]
        t = created
        fate = r.random()
        if fate < 0.05:
            t += delay(2400, 1.2)
            events.append((t, "cancel", "new", "cancelled", author, None))
            return events
        staff = self.first_staff + self.pick_staff()
        if fate < 0.085:
            t += delay(10800)
            events.append((t, "reject", "new", "rejected", staff, r.choice(REJECT_REASONS)))
            return events
        reopened = False
        status = "new"
        while True:
            t += delay(TO_ACCEPT[priority] / (2 if reopened else 1))
            events.append((t, "accept", status, "accepted", staff, None))
            t += delay(TO_START[priority])
            events.append((t, "start", "accepted", "in_progress", staff, None))
            if not reopened and fate < 0.09:
                t += delay(86400)
                events.append(
                    (t, "reject", "in_progress", "rejected", staff, r.choice(REJECT_REASONS))
                )
                return events
            spent = delay(TO_DONE[priority], 0.9)
            if r.random() < 0.004:  # left for weeks
                spent *= r.uniform(15, 90)
            t += spent
            events.append((t, "done", "in_progress", "done", staff, None))
            if reopened or r.random() >= 0.015:
                break
            t += min(delay(72000), 6.5 * DAY_S)  # within the reopen window
            events.append((t, "reopen", "done", "reopened", author, None))
            reopened, status = True, "reopened"
            staff = self.first_staff + self.pick_staff()
        if r.random() < 0.30:
            rating = RATINGS[self.pick_rating()]
            t += delay(10800, 1.2)
            events.append((t, "rated", None, None, author, str(rating)))
        return events

    def requests(
        self, on_request: Callable[[tuple[Any, ...]], None], on_event: Callable[..., None]
    ) -> Counts:
        """Every request row (in id order) and event row (in time order), to the callbacks."""
        s, rng = self.shape, self.rng
        counts = Counts(users=s.users)
        due: list[tuple[float, int, int, Event]] = []  # (t, seq, request id, event)
        seq = 0
        at = self._at

        def flush(until: float) -> None:
            while due and due[0][0] <= until:
                _, _, rid, (t, action, frm, to, actor, note) = heapq.heappop(due)
                counts.events += 1
                on_event((counts.events, rid, actor, action, frm, to, note, at(t)))

        for rid, created in enumerate(self.created_times(), start=1):
            priority = PRIORITIES[self.pick_priority()]
            author = self.first_resident + int(s.residents * rng.random() ** 1.5)
            place = self.places[self.pick_place()]
            title = TITLES[int(len(TITLES) * rng.random() ** 1.3)]
            description = f"{title} ({place.lower()}). {rng.choice(DETAILS)}".strip()
            happened = [e for e in self.life(created, priority, author) if e[0] < self.anchor]
            status, assignee, rating = "new", None, None
            accepted = started = done = closed = None
            for t, action, frm, to, actor, note in happened:
                if action == "accept":
                    assignee, accepted = actor, t
                elif action == "start":
                    started = t
                elif action == "done":
                    done = t
                elif action in ("reject", "cancel"):
                    closed = t
                elif action == "reopen":
                    done, rating = None, None
                elif action == "rated":
                    rating = int(note or 0)
                if to is not None:
                    status = to
                seq += 1
                heapq.heappush(due, (t, seq, rid, (t, action, frm, to, actor, note)))
            flush(created)
            on_request(
                (
                    rid,
                    author,
                    assignee,
                    title,
                    description,
                    place,
                    priority,
                    status,
                    rating,
                    len(happened),  # version: the insert, then one per change
                    at(created),
                    at(happened[-1][0]),
                    None if accepted is None else at(accepted),
                    None if started is None else at(started),
                    None if done is None else at(done),
                    None if closed is None else at(closed),
                    None,  # escalated_at: nothing escalates yet
                )
            )
            counts.requests += 1
            counts.open += status in ("new", "accepted", "in_progress", "reopened")
            counts.rated += rating is not None
        flush(math.inf)
        return counts

    @staticmethod
    def _at(t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)


# --- Loading -------------------------------------------------------------------------------------

USER_COLUMNS = (
    "id, telegram_id, username, first_name, last_name, language, role, reachable, created_at,"
    " updated_at, erased_at"
)
REQUEST_COLUMNS = (
    "id, author_id, assignee_id, title, description, location, priority, status, rating, version,"
    " created_at, updated_at, accepted_at, started_at, done_at, closed_at, escalated_at"
)
EVENT_COLUMNS = "id, request_id, actor_id, action, from_status, to_status, note, created_at"
TABLES = ("users", "requests", "request_events")
PROGRESS_S = 2.0


def _session(conn: psycopg.Connection[Any]) -> None:
    # Foreign keys are triggers: off for the load (the generator keeps them true), as pg_restore
    # does; nothing waits for a flush to disk either.
    conn.execute("SET session_replication_role = replica")
    conn.execute("SET synchronous_commit = off")


def secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(name, CREATE INDEX ...) of the indexes that back no constraint, as the migrations made
    them: dropped for the load and rebuilt after it (much faster than 4M row-by-row updates)."""
    rows = conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i"
        " WHERE i.schemaname = 'public' AND i.tablename = ANY(%s)"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        " ORDER BY i.tablename, i.indexname",
        (list(TABLES),),
    ).fetchall()
    return [(str(name), str(sql)) for name, sql in rows]


def seed(conninfo: str, shape: Shape, tz: ZoneInfo, out: Callable[[str], None]) -> dict[str, Any]:
    """Fill an empty, migrated database; returns what the data set is (stored as its marker)."""
    started = time.monotonic()
    anchor = datetime.now(UTC).replace(microsecond=0)
    site = Site(shape, anchor, tz)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        indexes = secondary_indexes(admin)
        for name, _ in indexes:
            admin.execute(f'DROP INDEX "{name}"')
    out(f"seed: anchor {anchor.isoformat()}, {len(indexes)} secondary indexes dropped for the load")

    with psycopg.connect(conninfo) as main, psycopg.connect(conninfo) as side:
        _session(main)
        _session(side)
        t0 = time.monotonic()
        with main.cursor().copy(f"COPY users ({USER_COLUMNS}) FROM STDIN") as copy:
            for row in site.user_rows():
                copy.write_row(row)
        main.commit()
        out(f"seed: {shape.users:,} users in {time.monotonic() - t0:.1f} s")

        t0 = last = time.monotonic()
        progress = {"requests": 0, "events": 0}
        with (
            main.cursor().copy(f"COPY requests ({REQUEST_COLUMNS}) FROM STDIN") as requests,
            side.cursor().copy(f"COPY request_events ({EVENT_COLUMNS}) FROM STDIN") as events,
        ):
            write_event = events.write_row

            def on_request(row: tuple[Any, ...]) -> None:
                nonlocal last
                requests.write_row(row)
                progress["requests"] += 1
                if progress["requests"] % 10_000 == 0 and time.monotonic() - last >= PROGRESS_S:
                    last = time.monotonic()
                    span = last - t0
                    out(
                        f"seed: requests {progress['requests']:>9,}/{shape.requests:,}"
                        f" ({progress['requests'] / span:,.0f} rows/s), events"
                        f" {counter.events:>9,} ({counter.events / span:,.0f} rows/s)"
                    )

            counter = Counts()

            def on_event(row: tuple[Any, ...]) -> None:
                counter.events += 1
                write_event(row)

            counts = site.requests(on_request, on_event)
        main.commit()
        side.commit()
        span = time.monotonic() - t0
        out(
            f"seed: {counts.requests:,} requests and {counts.events:,} events in {span:.1f} s"
            f" ({(counts.requests + counts.events) / span:,.0f} rows/s)"
        )

    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute("SET maintenance_work_mem = '512MB'")
        for name, sql in indexes:
            t0 = time.monotonic()
            admin.execute(sql)  # the catalogue's own text
            out(f"seed: index {name} in {time.monotonic() - t0:.1f} s")
        for table in TABLES:
            admin.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        t0 = time.monotonic()
        # ANALYZE for the planner; VACUUM sets the visibility map (index-only scans use it),
        # as autovacuum does over time. Measured with the map cleared (the last months not
        # vacuumed yet, as on a live site): the month's figures within 30 ms of this.
        admin.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
        out(f"seed: VACUUM (ANALYZE) in {time.monotonic() - t0:.1f} s")
        sizes = []
        for table in TABLES:
            size = admin.execute(
                "SELECT pg_size_pretty(pg_total_relation_size(%s))", (table,)
            ).fetchone()
            sizes.append(f"{table} {size[0] if size else '?'}")
    marker = {
        "version": VERSION,
        "shape": asdict(shape),
        "anchor": anchor.isoformat(),
        "timezone": str(tz),
        "counts": asdict(counts),
        "seed_s": round(time.monotonic() - started, 1),
    }
    out(
        f"seed: done in {marker['seed_s']} s; open backlog {counts.open:,}, rated {counts.rated:,};"
        f" sizes with indexes: {', '.join(sizes)}"
    )
    return marker


def marker_json(marker: dict[str, Any]) -> str:
    return json.dumps(marker, sort_keys=True)
