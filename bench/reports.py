"""Admin reports on a large site: the daily, weekly and monthly report end to end, timed, with
each report's peak RSS, against the target of under 2 s and under 300 MB.

    .venv/bin/python -m bench.reports [--reseed] [--repeat N] [--kinds daily,weekly,month,today]
                                      [--explain timed] [--at anchor|now]

DATABASE_URL defaults to postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_reports
(created if missing, migrated with Alembic to head on every run). The first run seeds it
(bench/report_seed.py: 1,000,000 requests over two years, 100,000 users of whom 300 staff, each
request's history and ratings, with COPY; about a minute) and marks it with a comment on the
database; later runs find the data set and only time the reports. --reseed drops the
database and seeds it again (only a database whose name says "bench").

Each report runs in a fresh process, so its peak RSS is its own: one first build (it imports
matplotlib, as a worker's first report does), then --repeat builds timed for the median and
max, each `build(kind, langs={"en"})` plus the summary text; then the parts on their own as
`build` runs them: `compute` (the figures; "db" is the time spent in the driver's execute),
`write_csv` and `render_chart`. Peak RSS is ru_maxrss (KB on Linux) of that process, the
project's imports included (about 220 MB of it: workers.outbox imports aiogram). Reports are
taken at the data set's anchor (the moment it was seeded), so a rerun on another day measures
the same periods; `--at now` takes them at the wall clock instead.

Then EXPLAIN (ANALYZE, BUFFERS) of every query each report issues (figures and CSV, captured
with a `before_cursor_execute` listener): the scans and indexes it uses and its time, slowest
first; the full plans go to var/bench-reports-plans.txt. Exits non-zero only when the setup
fails, never on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/zavhoz_bench_reports"
KINDS = ("daily", "weekly", "week", "month", "today")
DEFAULT_KINDS = "daily,weekly,month,today"
TARGET_S = 2.0
TARGET_RSS_MB = 300.0
BIG_TABLES = ("requests", "request_events", "users")
ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "var" / "bench-reports-plans.txt"


# --- The database ----------------------------------------------------------------------------


def conninfo(url: str, database: str | None = None) -> str:
    """libpq's URI for a SQLAlchemy URL (psycopg connects with it directly)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    if not name:
        raise SystemExit(f"DATABASE_URL names no database: {url}")
    return name


def create_database(url: str, *, drop: bool = False) -> None:
    import psycopg
    from psycopg import sql

    name = database_name(url)
    with psycopg.connect(conninfo(url, "postgres"), autocommit=True) as conn:
        if drop:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def read_marker(url: str) -> dict[str, Any] | None:
    """The data set this database holds (the comment the seeding left on it), if complete."""
    import psycopg

    with psycopg.connect(conninfo(url)) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
            " WHERE datname = current_database()"
        ).fetchone()
        if not row or not row[0]:
            return None
        try:
            marker: dict[str, Any] = json.loads(row[0])
        except ValueError:
            return None
        exists = conn.execute("SELECT to_regclass('requests') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        count = conn.execute("SELECT count(*) FROM requests").fetchone()
        if not count or count[0] != marker.get("counts", {}).get("requests"):
            return None
    return marker


def write_marker(url: str, marker: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    from bench.report_seed import marker_json

    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(database_name(url)), sql.Literal(marker_json(marker))
            )
        )


def prepare(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The data set, seeded unless this database holds it already; the schema at head."""
    from zoneinfo import ZoneInfo

    from bench.report_seed import VERSION, Shape, seed
    from core.settings import get_settings
    from db import migrate

    shape = Shape(requests=args.requests, seed=args.seed)
    create_database(url)
    marker = None if args.reseed else read_marker(url)
    wanted = {"version": VERSION, "shape": shape.__dict__}
    if marker is not None and all(marker.get(k) == v for k, v in wanted.items()):
        print(
            f"data set: found ({marker['counts']}, anchor {marker['anchor']}, seeded in "
            f"{marker['seed_s']} s); --reseed to seed again"
        )
        migrate.upgrade(url)  # a new migration (an index) applies to the data set in place
        return marker
    if "bench" not in database_name(url):
        raise SystemExit(f"refusing to drop and seed {database_name(url)!r}: not a bench database")
    print(f"data set: seeding {database_name(url)} (dropped and created)", flush=True)
    create_database(url, drop=True)
    migrate.upgrade(url)
    marker = seed(
        conninfo(url),
        shape,
        ZoneInfo(get_settings().timezone),
        lambda line: print(line, flush=True),
    )
    write_marker(url, marker)
    return marker


# --- Timing a report, in a process of its own ------------------------------------------------


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def vm_hwm_mb() -> float:
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Timed:
    kind: str
    period: str = ""
    csv_rows: int = 0
    csv_bytes: int = 0
    cold: float = 0.0  # the first build in a fresh process: it imports matplotlib
    e2e: list[float] = field(default_factory=list)  # the warm builds after it
    figures: list[float] = field(default_factory=list)
    db: list[float] = field(default_factory=list)
    queries: int = 0
    csv: list[float] = field(default_factory=list)
    # The same CSV written row by row in Python (SQLite's path; PostgreSQL's before COPY).
    csv_by_rows: list[float] = field(default_factory=list)
    chart: list[float] = field(default_factory=list)
    rss_imports_mb: float = 0.0
    rss_after_e2e_mb: list[float] = field(default_factory=list)
    rss_peak_mb: float = 0.0  # ru_maxrss
    hwm_mb: float = 0.0  # VmHWM: this process image's own peak (ru_maxrss may carry the
    # parent's across fork+exec; the two agree when the parent was smaller)
    created: int = 0
    done: int = 0
    open_total: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.e2e)

    @property
    def worst(self) -> float:
        return max(self.e2e)

    @property
    def met(self) -> bool:
        return self.worst < TARGET_S and self.rss_peak_mb < TARGET_RSS_MB


def time_report(kind: str, repeat: int, at_iso: str) -> Timed:
    """Runs in a fresh (spawned) process: its peak RSS is this report's alone."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import event

    from core.domain import EventAction, ReportKind
    from core.logging import configure_logging
    from core.settings import get_settings
    from db.session import get_engine, session_scope
    from workers.reports.chart import render_chart
    from workers.reports.csv_export import _rows_csv, write_csv
    from workers.reports.figures import compute
    from workers.reports.periods import period_for
    from workers.reports.service import build, chart_labels, chart_title
    from workers.reports.summary import summary_text

    configure_logging("console", "WARNING")
    at = dt.datetime.fromisoformat(at_iso)
    report = ReportKind(kind)
    result = Timed(kind=kind)
    result.rss_imports_mb = maxrss_mb()
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        built = build(report, at=at, langs={"en"})
        summary_text(built.figures, "en")
        elapsed = time.perf_counter() - t0
        if i == 0:
            result.cold = elapsed
        else:
            result.e2e.append(elapsed)
        result.rss_after_e2e_mb.append(maxrss_mb())
        result.csv_rows, result.csv_bytes = built.csv_rows, len(built.csv)
        result.period = built.figures.period.label()
        result.created = built.figures.count(EventAction.CREATED)
        result.done = built.figures.count(EventAction.DONE)
        result.open_total = built.figures.open_total
        del built  # not alive during the next build (a worker holds one report at a time)

    # The parts, as build() runs them (one transaction), with the driver's execute time.
    in_db: list[float] = []
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(*_: Any) -> None:
        in_db.append(time.perf_counter() - started.pop())

    engine = get_engine()
    period = period_for(report, at, ZoneInfo(get_settings().timezone))
    for _ in range(repeat):
        with session_scope() as session, tempfile.TemporaryDirectory() as tmp:
            event.listen(engine, "before_cursor_execute", before)
            event.listen(engine, "after_cursor_execute", after)
            in_db.clear()
            t0 = time.perf_counter()
            figures = compute(session, period, at, get_settings().sla_by_priority())
            t1 = time.perf_counter()
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
            result.db.append(sum(in_db))
            result.queries = len(in_db)
            write_csv(session, period, Path(tmp) / "report.csv")
            t2 = time.perf_counter()
            png = Path(tmp) / "chart.png"
            render_chart(figures.days, chart_title(period, "en"), png, labels=chart_labels("en"))
            t3 = time.perf_counter()
            _rows_csv(session, period, Path(tmp) / "by-rows.csv")
            result.csv_by_rows.append(time.perf_counter() - t3)
        result.figures.append(t1 - t0)
        result.csv.append(t2 - t1)
        result.chart.append(t3 - t2)
    result.rss_peak_mb = maxrss_mb()
    result.hwm_mb = vm_hwm_mb()
    return result


def run_report(kind: str, repeat: int, at_iso: str) -> Timed:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(time_report, kind, repeat, at_iso).result()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def ratio(slow: list[float], fast: list[float]) -> float:
    return median(slow) / max(median(fast), 1e-9)


def report_line(r: Timed) -> str:
    runs = ", ".join(f"{s:.2f}" for s in r.e2e)
    return (
        f"{r.kind} ({r.period}): first build {r.cold:.2f} s, then median {r.median:.2f} s, max "
        f"{r.worst:.2f} s (runs {runs}); parts: figures {median(r.figures):.2f} s (db "
        f"{median(r.db):.2f} s, {r.queries} queries), CSV {median(r.csv):.2f} s (row by row "
        f"{median(r.csv_by_rows):.2f} s, x{ratio(r.csv_by_rows, r.csv):.1f}), chart "
        f"{median(r.chart):.2f} s; CSV {r.csv_rows:,} rows, {r.csv_bytes / 1e6:.1f} MB; "
        f"created {r.created:,}, done {r.done:,}, open {r.open_total:,}; peak RSS "
        f"{r.rss_peak_mb:.0f} MB (VmHWM {r.hwm_mb:.0f}; after imports {r.rss_imports_mb:.0f}, "
        f"after each build {', '.join(f'{m:.0f}' for m in r.rss_after_e2e_mb)})"
    )


def table(results: list[Timed]) -> str:
    head = [
        "report",
        "period",
        "CSV rows",
        "CSV MB",
        "first s",
        "median s",
        "max s",
        "figures s",
        "csv s",
        "chart s",
        "peak RSS MB",
        "+report MB",
        f"target met (<{TARGET_S:.0f} s, <{TARGET_RSS_MB:.0f} MB)",
    ]
    rows = [
        [
            r.kind,
            r.period,
            f"{r.csv_rows:,}",
            f"{r.csv_bytes / 1e6:.1f}",
            f"{r.cold:.2f}",
            f"{r.median:.2f}",
            f"{r.worst:.2f}",
            f"{median(r.figures):.2f}",
            f"{median(r.csv):.2f}",
            f"{median(r.chart):.2f}",
            f"{r.rss_peak_mb:.0f}",
            f"{r.rss_peak_mb - r.rss_imports_mb:.0f}",
            ("yes" if r.met else "NO") + ("" if r.cold < TARGET_S else " (first build NO)"),
        ]
        for r in results
    ]
    return render_table(head, rows)


def render_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return " | ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(head), "-+-".join("-" * w for w in widths), *map(line, rows)])


# --- The plans -------------------------------------------------------------------------------


def query_name(sql: str) -> str:
    """Which of the report's queries this is, from its text (falls back to its start)."""
    s = " ".join(sql.split())
    names = (
        ("DISTINCT request_events.request_id", "csv: requests touched"),
        ("floor(", "chart: events per bucket"),
        ("GROUP BY request_events.action", "transitions"),
        ("GROUP BY requests.status", "open by status"),
        ("GROUP BY requests.priority", "open by priority"),
        ("CAST(request_events.note", "rating"),
        ("max(request_events.created_at)", "overdue"),
        ("requests.accepted_at - requests.created_at", "to accept p50/p90"),
        ("requests.done_at - requests.created_at", "to done p50/p90"),
        ("GROUP BY requests.assignee_id", "staff: open assigned"),
        ("GROUP BY request_events.actor_id", "staff: completed"),
        ("FROM users", "staff: names"),
        ("GROUP BY requests.location", "top locations"),
    )
    for needle, name in names:
        if needle in s:
            return name
    return s[:40]


@dataclass
class Plan:
    name: str
    sql: str
    wall_ms: float  # median of plain runs
    explain_ms: float  # EXPLAIN ANALYZE's execution time (with its timing overhead)
    rows: int
    scans: list[str]
    seq_big: list[str]  # full scans of big tables
    hit: int
    read: int
    text: str


def walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [node]
    for child in node.get("Plans", []):
        nodes += walk(child)
    return nodes


def scan_of(node: dict[str, Any]) -> str | None:
    kind = str(node.get("Node Type", ""))
    if "Scan" not in kind or kind in ("Subquery Scan", "CTE Scan", "Function Scan"):
        return None
    rows = int(node.get("Actual Rows", 0)) * max(1, int(node.get("Actual Loops", 1)))
    target = node.get("Index Name") or node.get("Relation Name") or ""
    extra = ""
    if kind == "Index Only Scan":
        extra = f", heap fetches {int(node.get('Heap Fetches', 0)):,}"
    loops = int(node.get("Actual Loops", 1))
    looped = f" x{loops:,} loops" if loops > 1 else ""
    return f"{kind} {target} ({rows:,} rows{looped}{extra})"


def full_scan(node: dict[str, Any]) -> str | None:
    """A big table read whole: a sequential scan, or an index scan with no condition (all of
    it, in the index's order)."""
    table = node.get("Relation Name")
    if table not in BIG_TABLES:
        return None
    kind = node.get("Node Type")
    if kind in ("Seq Scan", "Parallel Seq Scan"):
        return f"{kind} {table}"
    if kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node:
        return f"{kind} {node.get('Index Name')} without a condition"
    return None


def explain(kind: str, at_iso: str) -> list[Plan]:
    """Captures the SQL of the report (figures and CSV) and explains each statement as the
    report runs it: a statement it streams (the CSV's, `yield_per`) runs in a server-side
    cursor, which PostgreSQL plans for the first rows (cursor_tuple_fraction), so it is
    timed as a cursor and explained as `DECLARE ... CURSOR FOR`."""
    from zoneinfo import ZoneInfo

    import psycopg
    from sqlalchemy import event

    from core.domain import ReportKind
    from core.settings import get_settings
    from db.session import get_engine, session_scope
    from workers.reports.csv_export import BATCH, write_csv
    from workers.reports.figures import compute
    from workers.reports.periods import period_for

    at = dt.datetime.fromisoformat(at_iso)
    period = period_for(ReportKind(kind), at, ZoneInfo(get_settings().timezone))
    captured: list[tuple[str, Any, bool]] = []

    def before(_c: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters, isinstance(cursor, psycopg.ServerCursor)))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before)
    try:
        with session_scope() as session, tempfile.TemporaryDirectory() as tmp:
            compute(session, period, at, get_settings().sla_by_priority())
            write_csv(session, period, Path(tmp) / "report.csv")
    finally:
        event.remove(engine, "before_cursor_execute", before)

    plans = []
    with engine.connect() as conn:
        raw: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        for statement, parameters, streamed in captured:
            walls = []
            for _ in range(3):
                t0 = time.perf_counter()
                if streamed:
                    with raw.cursor(name="bench_reports") as cur:
                        cur.execute(statement, parameters)
                        while cur.fetchmany(BATCH):
                            pass
                else:
                    raw.execute(statement, parameters).fetchall()
                walls.append((time.perf_counter() - t0) * 1000)
            declare = "DECLARE bench_explain CURSOR FOR " if streamed else ""
            head = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {declare}"
            row = raw.execute(head + statement, parameters).fetchone()
            assert row is not None
            doc = (json.loads(row[0]) if isinstance(row[0], str) else row[0])[0]
            lines = raw.execute(f"EXPLAIN (ANALYZE, BUFFERS) {declare}" + statement, parameters)
            text = "\n".join(str(line[0]) for line in lines)
            raw.rollback()
            top = doc["Plan"]
            nodes = walk(top)
            scans = [s for s in map(scan_of, nodes) if s]
            seq_big = [full for full in map(full_scan, nodes) if full]
            plans.append(
                Plan(
                    name=query_name(statement) + (" (cursor)" if streamed else ""),
                    sql=statement,
                    wall_ms=statistics.median(walls),
                    explain_ms=float(doc["Execution Time"]),
                    rows=int(top.get("Actual Rows", 0)),
                    scans=scans,
                    seq_big=seq_big,
                    hit=int(top.get("Shared Hit Blocks", 0)),
                    read=int(top.get("Shared Read Blocks", 0)),
                    text=text,
                )
            )
    return plans


def plans_table(plans: list[Plan], *, shown_ms: float = 0.0) -> str:
    """The report's queries, slowest first; those under `shown_ms` that read no big table
    whole are counted in a last line."""
    head = ["query", "ms", "explain ms", "rows", "buffers hit/read", "scans"]
    shown = [p for p in plans if p.wall_ms >= shown_ms or p.seq_big]
    rows = [
        [
            p.name,
            f"{p.wall_ms:.1f}",
            f"{p.explain_ms:.1f}",
            f"{p.rows:,}",
            f"{p.hit:,}/{p.read:,}",
            "; ".join(p.scans),
        ]
        for p in sorted(shown, key=lambda p: -p.wall_ms)
    ]
    out = render_table(head, rows)
    rest = [p for p in plans if p not in shown]
    if rest:
        total = sum(p.wall_ms for p in rest)
        out += f"\n({len(rest)} more, under {shown_ms:.0f} ms each, {total:.1f} ms together)"
    return out


def write_plans(explained: dict[str, list[Plan]], at_iso: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for kind, plans in explained.items():
            out.write(f"-- the {kind} report at {at_iso}: EXPLAIN (ANALYZE, BUFFERS)\n")
            for p in plans:
                out.write(f"\n-- {kind}, {p.name}: {p.wall_ms:.1f} ms\n{p.sql}\n\n{p.text}\n")
            out.write("\n")


# --- Main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--reseed", action="store_true", help="drop the data set, seed it again")
    parser.add_argument("--repeat", type=int, default=3, help="builds per report (default 3)")
    parser.add_argument("--kinds", default=DEFAULT_KINDS, help=f"of {','.join(KINDS)}")
    parser.add_argument(
        "--at", choices=("anchor", "now"), default="anchor", help="when reports are taken"
    )
    parser.add_argument(
        "--explain",
        default="timed",
        help="reports whose queries to explain: a list like month,daily, 'timed' (default: the"
        " --kinds) or '' for none",
    )
    parser.add_argument("--requests", type=int, default=1_000_000, help="data set size")
    parser.add_argument("--seed", type=int, default=20_261_201, help="the generator's seed")
    args = parser.parse_args(argv)
    args.kind_list = [k.strip() for k in args.kinds.split(",") if k.strip()]
    args.explain_list = [k.strip() for k in args.explain.split(",") if k.strip()]
    if args.explain_list == ["timed"]:
        args.explain_list = args.kind_list
    bad = [k for k in [*args.kind_list, *args.explain_list] if k not in KINDS]
    if bad:
        parser.error(f"unknown report {bad[0]!r} (one of {', '.join(KINDS)})")
    if args.repeat < 1 or args.requests < 1:
        parser.error("--repeat and --requests must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    # The project's settings are read from the environment: set it before the first read.
    os.environ.update(DATABASE_URL=url, LOG_LEVEL="WARNING", LOG_FORMAT="console")
    from core.logging import configure_logging
    from core.settings import get_settings

    get_settings.cache_clear()
    configure_logging("console", "WARNING")
    print(f"$ {shlex.join([Path(sys.executable).name, '-m', 'bench.reports', *sys.argv[1:]])}")
    print(
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, cpus: {os.cpu_count()}, "
        f"database: {database_name(url)}, TIMEZONE: {get_settings().timezone}"
    )
    marker = prepare(url, args)
    at_iso = marker["anchor"] if args.at == "anchor" else dt.datetime.now(dt.UTC).isoformat()
    print(f"reports at {at_iso} ({args.at}), {args.repeat} builds each, each in its own process")
    results: list[Timed] = []
    for kind in args.kind_list:
        result = run_report(kind, args.repeat, at_iso)
        results.append(result)
        print(report_line(result), flush=True)
    explained = {kind: explain(kind, at_iso) for kind in args.explain_list}
    if explained:
        write_plans(explained, at_iso, PLANS)
        print(
            f"\nEXPLAIN (ANALYZE, BUFFERS) of each report's queries; ms: the median of 3 plain "
            f"runs (full plans in {PLANS.relative_to(ROOT)})"
        )
    for kind, plans in explained.items():
        print(f"\n{kind}: {len(plans)} queries, {sum(p.wall_ms for p in plans):.0f} ms together")
        print(plans_table(plans, shown_ms=5.0))
        big = [f"{p.name} ({', '.join(p.seq_big)})" for p in plans if p.seq_big]
        print(f"big tables read whole: {'; '.join(big) if big else 'none'}")
    with contextlib.suppress(Exception):
        from db.session import dispose_engine

        dispose_engine()
    if not results:
        return 0
    print()
    print(table(results))
    print()
    print(
        "first s: the first build() in a fresh process, which imports matplotlib; median/max "
        f"s: the {args.repeat} builds after it (build() plus the summary text, end to end); "
        "figures/csv/chart s: the parts on their own, medians; peak RSS: the report's "
        "process (ru_maxrss), the project's imports included (after them: the +report MB)."
    )
    met = all(r.met for r in results)
    print(
        f"target (each report < {TARGET_S:.0f} s and < {TARGET_RSS_MB:.0f} MB, first builds "
        f"aside): {'MET' if met else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
