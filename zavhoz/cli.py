"""The `zavhoz` command: run any process of the system, or all of them on one machine."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from core.queues import ALL_QUEUES
from core.settings import SANDBOX_URL, Settings, get_settings

_SANDBOX_PORT = int(SANDBOX_URL.rsplit(":", 1)[1])
# On embedded defaults with the sandbox and no ADMIN_IDS, `make chat`'s user is the admin.
DEMO_ADMIN = 1001


def _bot(_: argparse.Namespace) -> int:
    from bot.app import main

    main(get_settings())
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers.app import app

    argv = ["worker", "-Q", args.queues, "--loglevel", get_settings().log_level, *args.celery_args]
    app.start([*_quiet(), *argv])
    return 0


def _quiet() -> list[str]:
    """Under `zavhoz up`, Celery's start-up banners stay out of the one terminal."""
    from core.logging import QUIET_ENV

    return ["--quiet"] if os.environ.get(QUIET_ENV) == "1" else []


def _beat(args: argparse.Namespace) -> int:
    from workers.app import app

    app.start([*_quiet(), "beat", "--loglevel", get_settings().log_level, *args.celery_args])
    return 0


def _db(args: argparse.Namespace) -> int:
    from db import migrate

    if args.action == "upgrade":
        migrate.upgrade()
    else:
        migrate.check()
    return 0


def _commands(args: argparse.Namespace) -> int:
    from workers import dead_letters

    if args.action == "list":
        letters = dead_letters.list_waiting()
        for letter in letters:
            print(
                f"{letter.id:>6}  {letter.created_at:%Y-%m-%d %H:%M}  {letter.task_name:<32}"
                f"  attempts {letter.attempts}  {letter.error[:80]}"
            )
        print(f"{len(letters)} dead-lettered command(s) waiting")
        return 0
    if not args.all and not args.ids:
        print("zavhoz: say which dead letters to replay (IDs or --all)", file=sys.stderr)
        return 2
    sent = dead_letters.replay(None if args.all else args.ids)
    missing = sorted(set(args.ids) - set(sent)) if not args.all else []
    print(f"replayed {len(sent)} command(s)" + (f"; not waiting: {missing}" if missing else ""))
    return 1 if missing else 0


def _report(args: argparse.Namespace) -> int:
    from core.domain import ReportKind
    from workers import outbox
    from workers.reports import service
    from workers.reports.summary import table_rows

    kind = ReportKind(args.kind)
    print(f"building the {kind} report…", file=sys.stderr)
    built = service.build(kind, langs={"en"})
    rows = table_rows(built.figures)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    out = Path(args.out) if args.out else get_settings().var_dir / "reports"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"zavhoz-{kind}-{built.figures.period.first_day:%Y-%m-%d}"
    (out / f"{stem}.png").write_bytes(built.charts["en"])
    (out / f"{stem}.csv").write_bytes(built.csv)
    print(f"chart: {out / f'{stem}.png'}\ncsv:   {out / f'{stem}.csv'} ({built.csv_rows} requests)")
    if args.send:
        admins = service.admins()
        ids, _ = service.send_report(kind, admins)
        if not ids:
            print("sent nothing: no admin to send to, or this period's report went out already")
            return 0
        counts = outbox.deliver(ids).counts
        print(f"sent to {len(admins)} admin(s): {counts} (the relay retries what is left)")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from sandbox.server import run

    run(args.host, args.port, state_dir=args.state_dir)
    return 0


def _chat(args: argparse.Namespace) -> int:
    from sandbox.chat import run_chat

    run_chat(args.url, args.user_id, first_name=args.name, language_code=args.language)
    return 0


def _up(args: argparse.Namespace) -> int:
    """The whole system on one machine: sandbox (without a token), migrations, worker, beat, bot."""
    from core.logging import QUIET_ENV
    from core.readiness import ENV as READY_ENV

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    ready_dir = settings.var_dir / "ready"
    shutil.rmtree(ready_dir, ignore_errors=True)
    env = {**os.environ, READY_ENV: str(ready_dir)}
    if settings.log_level.upper() != "DEBUG":
        env[QUIET_ENV] = "1"  # one line per user action; LOG_LEVEL=DEBUG shows everything
    exe = [sys.executable, "-m", "zavhoz"]
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    # From here on Ctrl-C and SIGTERM stop what has been started, in order, whenever they come
    # (the children run in sessions of their own: nothing else would stop them).
    stop = _Stop()
    try:
        return _start(args, settings, env, exe, children, stop)
    finally:
        _stop_in_order(children, 0)


def _start(
    args: argparse.Namespace,
    settings: Settings,
    env: dict[str, str],
    exe: list[str],
    children: list[tuple[str, subprocess.Popen[bytes]]],
    stop: _Stop,
) -> int:
    from db import migrate

    api_url = settings.api_url
    if settings.bot_token is None and settings.telegram_api_url is None:
        if not _port_free(args.sandbox_port):
            print(
                f"zavhoz: port {args.sandbox_port} is busy (another zavhoz up?); choose another"
                f" with: zavhoz up --sandbox-port PORT",
                file=sys.stderr,
            )
            return 2
        api_url = env["TELEGRAM_API_URL"] = f"http://127.0.0.1:{args.sandbox_port}"
        if not settings.admin_ids:
            # The demo needs someone to grant roles: the first chat user is the admin.
            env["ADMIN_IDS"] = str(DEMO_ADMIN)
        # The sandbox keeps its state under VAR_DIR, like the rest: a restart loses nothing.
        state_dir = str(settings.var_dir.resolve())
        sandbox = [*exe, "sandbox", "--port", str(args.sandbox_port), "--state-dir", state_dir]
        children.append(("sandbox", _child(sandbox, env)))
    migrate.upgrade()
    # One process with threads: without Redis the rate limiter lives in process memory, so
    # a single process is what keeps Telegram's limits.
    worker = [*exe, "worker", "--", "-P", "threads", "-c", "4"]
    children.append(("worker", _child(worker, env)))
    children.append(("beat", _child([*exe, "beat"], env)))
    children.append(("bot", _child([*exe, "bot"], env)))
    if stop.requested:
        return 130
    if not _wait_ready(settings.var_dir / "ready", ("worker", "beat", "bot"), children, stop):
        return 130 if stop.requested else 1
    broker = "Redis" if settings.redis_url else "an embedded broker under " + str(settings.var_dir)
    print(
        f"\nzavhoz is up: Bot API at {api_url}, {broker}, database {settings.db_url}.\n"
        f"Talk to the bot in another terminal:  make chat   (or: zavhoz chat --as 1001"
        f"{'' if api_url == SANDBOX_URL else ' --url ' + api_url})\n"
        f"{_roles_hint(env)}"
        f"Stop with Ctrl-C.\n",
        flush=True,
    )
    return _supervise(children, stop)


def _roles_hint(env: dict[str, str]) -> str:
    admins = env.get("ADMIN_IDS", "")
    if not admins:
        return "Admins: set ADMIN_IDS (comma-separated Telegram ids); they /grant staff.\n"
    first = admins.split(",")[0].strip()
    return (
        f"User {first} is an admin: in its chat, /grant 1002 staff makes user 1002 staff"
        f" (make chat ID=1002 in a third terminal).\n"
    )


def _child(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: the terminal's Ctrl-C reaches only `up`, which stops the children
    # in order (see _stop_in_order) instead of all at once.
    return subprocess.Popen(argv, env=env, start_new_session=True)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        # As the sandbox binds (aiohttp sets SO_REUSEADDR): the connections of a sandbox that
        # just stopped linger in TIME_WAIT and must not make a restart refuse the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Stop:
    """Whether Ctrl-C or SIGTERM came (the handlers are installed when it is made)."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._request)
        signal.signal(signal.SIGTERM, self._request)

    def _request(self, *_: object) -> None:
        self.requested = True


def _wait_ready(
    ready_dir: Path,
    names: Sequence[str],
    children: list[tuple[str, subprocess.Popen[bytes]]],
    stop: _Stop,
    timeout: float = 120,
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.requested:
        if all((ready_dir / name).exists() for name in names):
            return True
        for name, child in children:
            if child.poll() is not None:
                print(f"zavhoz: {name} exited with {child.returncode}", file=sys.stderr)
                return False
        time.sleep(0.1)
    if not stop.requested:
        print(f"zavhoz: not ready after {timeout:.0f} s; stopping", file=sys.stderr)
    return False


def _supervise(children: list[tuple[str, subprocess.Popen[bytes]]], stop: _Stop) -> int:
    while not stop.requested:
        for name, child in children:
            if child.poll() is not None:
                print(f"zavhoz: {name} exited with {child.returncode}; stopping", file=sys.stderr)
                return 1
        time.sleep(0.2)
    return 0


# Who stops first: the bot (no new updates), then the worker (finishes or hands back what it
# holds), then beat, and the sandbox last, so pending sends still reach it.
_STOP_ORDER = ("bot", "worker", "beat", "sandbox")


def _stop_in_order(children: list[tuple[str, subprocess.Popen[bytes]]], code: int) -> int:
    by_name = dict(children)
    for name in _STOP_ORDER:
        child = by_name.get(name)
        if child is None or child.poll() is not None:
            continue
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zavhoz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run everything on one machine")
    up.add_argument("--sandbox-port", type=int, default=_SANDBOX_PORT)
    up.set_defaults(func=_up)
    sub.add_parser(
        "bot", help="run the bot (polling, or webhook when WEBHOOK_URL is set)"
    ).set_defaults(func=_bot)
    worker = sub.add_parser("worker", help="run a Celery worker; extra args go to celery")
    worker.add_argument("-Q", "--queues", default=",".join(ALL_QUEUES))
    worker.add_argument("celery_args", nargs=argparse.REMAINDER)
    worker.set_defaults(func=_worker)
    beat = sub.add_parser("beat", help="run Celery beat; extra args go to celery")
    beat.add_argument("celery_args", nargs=argparse.REMAINDER)
    beat.set_defaults(func=_beat)
    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "check"])
    db.set_defaults(func=_db)
    commands = sub.add_parser("commands", help="dead-lettered commands: list or replay")
    commands.add_argument("action", choices=["list", "replay"])
    commands.add_argument("ids", nargs="*", type=int, metavar="ID")
    commands.add_argument("--all", action="store_true", help="replay every waiting one")
    commands.set_defaults(func=_commands)
    report = sub.add_parser(
        "report", help="a report as a table, its chart and CSV; --send to admins"
    )
    report.add_argument("kind", choices=["daily", "weekly", "today", "week", "month"])
    report.add_argument(
        "--out", help="where to write the PNG and the CSV (default VAR_DIR/reports)"
    )
    report.add_argument("--send", action="store_true", help="deliver it to the admins")
    report.set_defaults(func=_report)
    from zavhoz import maintenance, privacy, status

    maintenance.add_parser(sub)
    privacy.add_parser(sub)
    status.add_parser(sub)
    sandbox = sub.add_parser("sandbox", help="run the local Bot API server double")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=_SANDBOX_PORT)
    sandbox.add_argument(
        "--state-dir", help="keep state across restarts in DIR/sandbox.sqlite3 (default: memory)"
    )
    sandbox.set_defaults(func=_sandbox)
    chat = sub.add_parser("chat", help="talk to the bot through the sandbox from a terminal")
    chat.add_argument("--as", dest="user_id", type=int, required=True, help="your Telegram id")
    chat.add_argument("--name", default="You")
    chat.add_argument("--language", default="en")
    chat.add_argument("--url", default=os.environ.get("TELEGRAM_API_URL", SANDBOX_URL))
    chat.set_defaults(func=_chat)
    return parser


# One-shot commands for people (the processes configure their own logging).
_TOOLS = frozenset({"db", "commands", "report", "maintenance", "privacy", "status"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("sandbox", "chat"):
        settings = get_settings()  # a bad setting stops here with one line, before anything
    if args.command in _TOOLS:
        from core.logging import configure_logging

        # Tools print their tables on stdout; their logs go to stderr, warnings and worse.
        configure_logging(settings.log_format, "WARNING")
    if getattr(args, "celery_args", None) and args.celery_args[0] == "--":
        args.celery_args = args.celery_args[1:]
    code: int = args.func(args)
    return code
