"""Garbage-collector pauses in a worker's commands, with and without the start-up heap frozen
(core/heap.py), side by side in one run.

    .venv/bin/python -m bench.gc_pauses [--commands 300] [--staff 300] [--rounds 2]

A fresh SQLite database (migrated) holds `--staff` reachable staff members and a resident with
one unassigned request per command. Each round spawns two processes, one per mode ("as
before": nothing frozen; "frozen": `freeze_startup_heap()` after the worker's imports and a
first command, as workers/app.py does at start): each imports the worker's whole stack
(workers.app, the command handlers), applies the resident's AddComment commands one by one
through the real command path (`apply_command`: a comment while nobody is assigned notifies
every staff member, `--staff` outbox rows a command), and reports each command's time and the
full (generation 2) collections that ran meanwhile, counted and timed by `gc.callbacks`.
Nothing is sent to Telegram. Ratios are frozen / as before, per round and overall.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

BASE_TG = 7_000_000_000


def seed(url: str, staff: int, requests: int) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from db import migrate
    from db.models import Request, User

    migrate.upgrade(url)
    engine = create_engine(url)
    with Session(engine) as session:
        session.add_all(
            User(telegram_id=BASE_TG + i, first_name=f"Staff {i}", role="staff", language="en")
            for i in range(1, staff + 1)
        )
        resident = User(telegram_id=BASE_TG, first_name="Resident", language="en")
        session.add(resident)
        session.flush()
        session.add_all(
            Request(
                author_id=resident.id,
                title=f"Light broken #{i}",
                description="The light in the hall flickers",
                location=f"Hall {i}",
            )
            for i in range(requests + 1)
        )
        session.commit()
    engine.dispose()


def run_mode(url: str, var_dir: str, frozen: bool, commands: int) -> dict[str, Any]:
    """Spawned: a worker's imports, one warm-up command, then the measured commands."""
    os.environ.update(DATABASE_URL=url, VAR_DIR=var_dir, LOG_LEVEL="ERROR")
    os.environ.pop("REDIS_URL", None)
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    import workers.app  # noqa: F401  (the worker's import set, as a real worker has it)
    from core import commands as c
    from core.clock import now
    from core.heap import freeze_startup_heap
    from core.logging import configure_logging
    from db.models import Request
    from db.session import get_engine
    from workers.command_runner import apply_command
    from workers.commands import HANDLERS

    configure_logging("console", "ERROR")
    with Session(get_engine()) as session:
        ids = list(session.scalars(select(Request.id).order_by(Request.id)))
    actor = c.Actor(user_id=BASE_TG, chat_id=BASE_TG, language="en", first_name="Resident")

    def comment(n: int) -> float:
        command = c.AddComment(
            request_id=ids[n],
            text=f"Any news? ({n})",
            idempotency_key=f"bench-gc:{frozen}:{n}",
            actor=actor,
            issued_at=now(),
        )
        t0 = time.perf_counter()
        apply_command(command, HANDLERS[type(command)])
        return time.perf_counter() - t0

    comment(0)
    frozen_objects = freeze_startup_heap() if frozen else 0
    full: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            full.append(time.perf_counter() - started.pop())

    gc.callbacks.append(on_gc)
    times = [comment(n) for n in range(1, commands + 1)]
    gc.callbacks.remove(on_gc)
    return {
        "times": times,
        "full": full,
        "frozen": frozen_objects,
        "tracked": len(gc.get_objects()),
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(label: str, result: dict[str, Any]) -> str:
    ms = [t * 1000 for t in result["times"]]
    full = result["full"]
    return (
        f"{label:<22} p50 {quantile(ms, 0.5):6.1f}  p95 {quantile(ms, 0.95):6.1f}  p99"
        f" {quantile(ms, 0.99):6.1f}  max {max(ms):6.1f} ms | full collections {len(full):3d},"
        f" {sum(full) * 1000:7.1f} ms in all, longest {max(full, default=0) * 1000:5.1f} ms |"
        f" frozen {result['frozen']:,}, tracked {result['tracked']:,}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--staff", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    url = f"sqlite:///{work / 'bench.db'}"
    t0 = time.monotonic()
    seed(url, args.staff, args.commands * args.rounds * 2)
    print(f"$ {Path(sys.executable).name} -m bench.gc_pauses {' '.join(sys.argv[1:])}")
    print(
        f"cpus: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; {args.staff} staff,"
        f" {args.commands} AddComment commands a mode and round (each notifies every staff"
        f" member); seeded in {time.monotonic() - t0:.1f} s ({url})"
    )
    ctx = get_context("spawn")
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for round_ in range(1, args.rounds + 1):
        for frozen in (False, True):
            # A fresh database per process would cost a seed each: each process takes its own
            # requests instead (commands are told apart by their keys).
            with ctx.Pool(1) as pool:
                result = pool.apply(run_mode, (url, str(work), frozen, args.commands))
            results[frozen].append(result)
            print(line(f"round {round_}: {'frozen' if frozen else 'as before'}", result))
    print()
    before = [t for r in results[False] for t in r["times"]]
    after = [t for r in results[True] for t in r["times"]]
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        a, b = quantile(before, q) * 1000, quantile(after, q) * 1000
        print(f"{name}: as before {a:6.1f} ms, frozen {b:6.1f} ms, ratio {b / a:.2f}x")
    mean_a, mean_b = statistics.mean(before) * 1000, statistics.mean(after) * 1000
    ratio = mean_b / mean_a
    print(f"mean: as before {mean_a:6.1f} ms, frozen {mean_b:6.1f} ms, ratio {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
