"""One user flooding the bot: how long everybody else waits for their replies meanwhile.

    .venv/bin/python -m bench.flood [--flood 40] [--bystanders 3] [--each 8]

The real bot and a worker (processes, as tests/support/processes.py starts them) on PostgreSQL
(a fresh database, zavhoz_bench_flood), Redis (database 11, flushed: broker, limiter, dialogs,
quotas) and the sandbox Bot API over HTTP with its default flood limits. Bystanders send `/my`
one at a time, each waiting for its reply and then 1.2 s (within their own chat's pace), and
the time from sending to the reply reaching the sandbox is their latency. Three phases side by
side in one run: quiet; while one user sends `--flood` unknown texts as fast as HTTP goes; while
they send `--flood` `/my` commands (over their commands quota after the first 10). Printed per
phase: the bystanders' latency (p50 / p95 / max), the worst one's ratio to quiet, what the
flooder got back (replies) and the bot skipped (courtesy replies to a chat at its pace).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from db import migrate
from sandbox.server import SandboxThread
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI
from tests.support.services import clean_redis_db

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DATABASE = "zavhoz_bench_flood"
REDIS_DB = 11
FLOODER = 9001
BYSTANDER = 9101


def fresh_database() -> str:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{DATABASE}"
    migrate.upgrade(url)
    return url


def ask(sandbox: SandboxAPI, user: int, text_: str, timeout: float = 60) -> float:
    """Send `text_` as `user`; seconds until a new message reaches their chat."""
    seen = max((m["seq"] for m in sandbox.messages(user)), default=0)
    started = time.monotonic()
    sandbox.send_text(user, text_, first_name=f"User {user}")
    deadline = started + timeout
    while time.monotonic() < deadline:
        if sandbox.messages(user, after=seen, wait=1):
            return time.monotonic() - started
    return float("inf")


def bystanders(sandbox: SandboxAPI, count: int, each: int) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def one(user: int) -> None:
        for _ in range(each):
            waited = ask(sandbox, user, "/my")
            with lock:
                latencies.append(waited)
            time.sleep(1.2)

    threads = [threading.Thread(target=one, args=(BYSTANDER + k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def flood(sandbox: SandboxAPI, what: str, count: int) -> None:
    for _ in range(count):
        sandbox.send_text(FLOODER, what, first_name="Flooder")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=40, help="updates the flooder sends")
    parser.add_argument("--bystanders", type=int, default=3)
    parser.add_argument("--each", type=int, default=8, help="/my per bystander and phase")
    args = parser.parse_args(argv)
    print(f"$ {Path(sys.executable).name} -m bench.flood {' '.join(sys.argv[1:])}")
    url = fresh_database()
    with (
        clean_redis_db(REDIS_DB) as redis_url,
        SandboxThread() as server,
        tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp,
    ):
        sandbox = SandboxAPI(server.url)
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "BROKER_URL": redis_url,
            "TELEGRAM_API_URL": server.url,
            "LOG_FORMAT": "json",
            "VAR_DIR": str(Path(tmp) / "var"),
        }
        procs = Processes(Path(tmp), env)
        try:
            procs.worker()
            bot = procs.start("bot", "bot")
            bot.wait_for_log("bot.polling")
            for user in [FLOODER, *(BYSTANDER + k for k in range(args.bystanders))]:
                ask(sandbox, user, "/start")
            time.sleep(3)  # every chat's burst back
            rows = []
            for phase, what in (("quiet", ""), ("texts", "hello?"), ("commands", "/my")):
                before = len(sandbox.messages(FLOODER))
                skipped = bot.log().count("bot.courtesy_skipped")
                if what:
                    threading.Thread(target=flood, args=(sandbox, what, args.flood)).start()
                latencies = bystanders(sandbox, args.bystanders, args.each)
                time.sleep(2)
                got = len(sandbox.messages(FLOODER)) - before
                rows.append(
                    (phase, latencies, got, bot.log().count("bot.courtesy_skipped") - skipped)
                )
                time.sleep(11)  # the flooder's quota window passes
        finally:
            procs.stop_all()
    quiet_max = max(rows[0][1])
    print(
        f"\n{args.bystanders} bystanders x {args.each} /my a phase; the flooder sends {args.flood}"
        " updates at once\n"
    )
    print("phase     | bystanders p50 / p95 / max (s) | max vs quiet | flooder got | skipped")
    for phase, latencies, got, skipped in rows:
        p50, p95, top = (quantile(latencies, q) for q in (0.5, 0.95, 1.0))
        print(
            f"{phase:<9} | {p50:6.2f} / {p95:6.2f} / {top:6.2f}         |"
            f" {top / quiet_max:10.2f}x | {got:11d} | {skipped:7d}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
