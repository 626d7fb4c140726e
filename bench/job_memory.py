"""Memory of a worker process that runs the heavy scheduled jobs again and again: a plateau or a
leak? The scheduler soak (bench/scheduler_soak.py) saw two prefork children grow 12-18 % over
144 ticks; it cannot tell why. This runs the jobs' bodies in one process, round after round,
against a copy of the upkeep data set (bench/maintenance.py's base: 1M requests), and prints
after each round:

- RSS (what the soak measures);
- Python's live small-object blocks (sys.getallocatedblocks): objects kept, i.e. a leak of
  Python objects;
- malloc's bytes in use and bytes held free inside its heaps (glibc mallinfo2): free-held
  bytes that grow while in-use bytes do not are fragmentation, not a leak.

Two variants side by side, each in a fresh spawned process with its start-up heap frozen as a
worker child's is: `plain`, and `trim`, which gives memory back after each job as the workers
do (workers/memory.py: a full collection, then malloc_trim(0)); ms/job is what that costs.
The jobs: the nightly consistency check (incremental after the first round, as in production),
the orphan scan, the escalation sweep, and the daily and weekly reports built (chart and CSV
rendered, not sent).

    .venv/bin/python -m bench.job_memory [--rounds 20]

Needs the base of bench/maintenance.py (run it once); DATABASE_URL names the server.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from bench.maintenance import DEFAULT_URL, admin_execute, copy_database, exists, url_for
from bench.scheduler_soak import rss_mb

DB = "zavhoz_bench_job_memory"
VARIANTS = ("plain", "trim")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def malloc_mb() -> tuple[float, float]:
    """(in use, held free) by glibc malloc, MB."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def rounds(variant: str, url: str, n: int) -> list[dict[str, float]]:
    """Runs in a spawned process."""
    os.environ["DATABASE_URL"] = url
    from core.domain import ReportKind
    from core.heap import freeze_startup_heap
    from core.logging import configure_logging
    from workers import memory
    from workers.reports import service
    from workers.upkeep import consistency, escalation, orphans

    configure_logging("console", "ERROR")
    freeze_startup_heap()  # as a worker child does after its set-up

    def check() -> None:
        consistency.remember(consistency.check(since=consistency.last_cursor()))

    jobs = (
        check,
        orphans.scan,
        lambda: escalation.escalate(),
        lambda: service.build(ReportKind.DAILY),
        lambda: service.build(ReportKind.WEEKLY),
    )
    out = []
    for _ in range(n):
        t0, giving = time.perf_counter(), 0.0
        for job in jobs:
            job()
            if variant == "trim":
                t1 = time.perf_counter()
                memory.give_back()
                giving += time.perf_counter() - t1
        in_use, free = malloc_mb()
        out.append(
            {
                "rss": rss_mb(os.getpid()) or 0.0,
                "blocks": sys.getallocatedblocks() / 1000,
                "in_use": in_use,
                "free": free,
                "s": time.perf_counter() - t0,
                "give_ms": giving * 1000 / len(jobs),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.job_memory", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)

    server = os.environ.get("DATABASE_URL", DEFAULT_URL)
    base, url = url_for(server, "zavhoz_bench_maintenance_base"), url_for(server, DB)
    if not exists(base):
        print(
            "the upkeep data set is missing: run python -m bench.maintenance once", file=sys.stderr
        )
        return 2
    admin_execute(url, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    if not copy_database(base, url, tries=10):
        print("the base stayed busy", file=sys.stderr)
        return 2
    print(f"$ python -m bench.job_memory --rounds {args.rounds}; database {DB}", flush=True)
    results: dict[str, list[dict[str, float]]] = {}
    for variant in VARIANTS:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            results[variant] = pool.submit(rounds, variant, url, args.rounds).result()
        print(f"{variant}: done", flush=True)
    head = "round"
    for v in VARIANTS:
        head += f" | {v}: RSS MB | blocks k | malloc used MB | malloc free MB | s | ms/job"
    print(head)
    for i in range(args.rounds):
        line = f"{i + 1:5}"
        for v in VARIANTS:
            r = results[v][i]
            line += (
                f" | {r['rss']:12.1f} | {r['blocks']:8.0f} | {r['in_use']:14.1f}"
                f" | {r['free']:14.1f} | {r['s']:4.1f} | {r['give_ms']:6.1f}"
            )
        print(line)
    half = args.rounds // 2
    for v in VARIANTS:
        rs = results[v]
        growth = (rs[-1]["rss"] - rs[half]["rss"]) / rs[half]["rss"] * 100
        first = (rs[half]["rss"] - rs[0]["rss"]) / rs[0]["rss"] * 100
        print(
            f"{v}: RSS after round 1 {rs[0]['rss']:.1f} MB, round {half + 1} {rs[half]['rss']:.1f}"
            f" ({first:+.1f} %), last {rs[-1]['rss']:.1f} ({growth:+.1f} % over the second half)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
