"""`zavhoz up` (= `make run`) restarted around a Submit, and the order of replies to one chat.

    .venv/bin/python -m bench.embedded_restarts [--runs 10] [--tries 30]
                                                [--delays 0.02,0.05,0.1,0.2,0.8]
                                                [--stops kill,ctrl-c] [--settle-timeout-s 150]
                                                [--grace-s 3] [--keep]

About 12-15 minutes with the defaults: each `up` takes 12-20 s to start on two cores, and a
command fetched by a killed worker waits out the broker's 60 s visibility timeout (an outbox
row claimed by it, its 120 s lease), so the runs that kill just after the Submit take longest.
The Submit is applied and answered within about 0.1 s of the press here (the order part prints
it), so the default delays sit around that: before the bot or the worker has it, while the
worker applies it, while its replies go out, and after.
`--runs 0` or `--tries 0` leaves that part out.

Each `up` is `python -m zavhoz up --sandbox-port PORT` on embedded defaults (the sandbox,
SQLite, the embedded broker, one threaded worker, beat and the bot; DATABASE_URL, REDIS_URL,
BOT_TOKEN, ADMIN_IDS and TELEGRAM_API_URL are dropped from the environment) with a fresh
temporary VAR_DIR, started and stopped through tests/support and the helpers of
tests/e2e/test_embedded_restarts.py. Users are driven through the sandbox's control API.

1. Restarts around a Submit (issue 14, items 2 and 3). Each run, on a VAR_DIR of its own:
   `up`, then 1002 /starts, admin 1001 (the demo admin) /starts and sends `/grant 1002 staff`,
   resident 1003 /starts, fills in /new and presses Submit; after a delay (run i takes the
   stop `--stops[i % len]` and the delay `--delays[(i // len(stops)) % len]`, so 10 runs cover
   each pair once) the machine is stopped: `kill` is SIGKILL to every process of `up` at once
   (the e2e test's kill_machine), `ctrl-c` is SIGINT to up's process group as a terminal sends
   it (timed until `up` exits). `up` again on the same VAR_DIR and port; the run settles when
   the author has "Request #N created", 1002 and 1001 each a "New request #N", the embedded
   broker holds no message from before the restart (a command fetched by the killed worker
   comes back after the 60 s visibility timeout) and the outbox nothing pending or being sent
   (a row a killed worker was sending goes back after OUTBOX_LEASE_SECONDS, 120 s, and may be
   sent twice), and that has held for --grace-s; or at --settle-timeout-s after the restart.
   Then: request rows with the run's title in zavhoz.sqlite3 (want 1), "Request #N created"
   messages in the author's chat (want 1), "New request #N" messages to 1002 and to 1001
   (want 1 each), outbox rows in state dead and dead_letters rows (want 0), outbox rows still
   unsent, the time from the restart (launching `up` again) to the author's "Request #N
   created" as seen by a long-poll in this process ("before": it came before the stop, or
   with a kill as the sandbox died; "stopping": during Ctrl-C's orderly stop), the same for
   the last of the reply and the two notices, and the time from start and restart to "zavhoz
   is up". A run that settles late or not at all says what it waited for last (outbox rows,
   broker messages from before the restart, messages not yet come).
2. Order (item 5): one `up`, the same admin and staff; --tries times a new resident (3001...)
   /starts, fills in /new, presses Submit and at once sends /my. Out of order: the /my listing
   that shows #N reached the chat before "Request #N created" (by the sandbox's message ids,
   the order the chat shows). A listing without #N (the /my applied before the Submit) is
   counted apart.

Prints a line per run and per try as it goes, a table per part and a summary. Exits non-zero
only when the setup fails, never on a result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.embedded import pct, table
from tests.e2e.test_embedded import free_port
from tests.e2e.test_embedded_restarts import CREATED, children, fill_in, kill_machine, start
from tests.support.chat import Chat
from tests.support.processes import Proc, Processes
from tests.support.sandbox_api import SandboxAPI

NOTICE = re.compile(r"New request #(\d+)")
ADMIN, STAFF, RESIDENT, FIRST_ORDER_RESIDENT = 1001, 1002, 1003, 3001
# Settings that would take `up` off its embedded defaults.
NOT_EMBEDDED = ("DATABASE_URL", "REDIS_URL", "BOT_TOKEN", "ADMIN_IDS", "TELEGRAM_API_URL")
STOPS = ("kill", "ctrl-c")

Message = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# machines


class Machine:
    """One `zavhoz up` (through tests.support.Processes) on a VAR_DIR, with every child it
    started remembered so that nothing outlives the bench."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.var_dir = root / "var"
        root.mkdir(parents=True)
        self.procs = Processes(root, {"VAR_DIR": str(self.var_dir)})
        self.api = SandboxAPI(f"http://127.0.0.1:{port}")
        self.ups: list[Proc] = []
        self.pids: set[int] = set()

    @property
    def up(self) -> Proc:
        return self.ups[-1]

    def start(self) -> float:
        """`up` (again); seconds to "zavhoz is up"."""
        started = time.monotonic()
        name = "up" if not self.ups else f"up-{len(self.ups) + 1}"
        try:
            self.ups.append(start(self.procs, name, self.port))
        finally:
            self._remember()
        return time.monotonic() - started

    def _remember(self) -> None:
        for proc in self.procs.started:
            if proc.popen.poll() is None:
                self.pids.update(children(proc.popen.pid))

    def kill(self) -> None:
        """SIGKILL to every process of the running `up` at once (the e2e test's way)."""
        self._remember()
        kill_machine(self.up)

    def ctrl_c(self, timeout: float = 120) -> tuple[float, bool]:
        """SIGINT to up's process group; seconds until `up` exited, and whether it did."""
        self._remember()
        started = time.monotonic()
        os.killpg(self.up.popen.pid, signal.SIGINT)  # what a terminal sends its foreground group
        try:
            self.up.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return time.monotonic() - started, False
        return time.monotonic() - started, True

    def leftovers(self) -> list[int]:
        return [pid for pid in self.pids if _ours(pid, self.var_dir)]

    def close(self) -> None:
        """Everything it started, killed (by process group and pid, checked to be ours)."""
        for proc in self.procs.started:
            if proc.popen.poll() is None:
                self.pids.update(children(proc.popen.pid))
                with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                    kill_machine(proc)
        for pid in self.leftovers():
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
        for proc in self.procs.started:
            proc.stop()  # already gone: closes its log

    def log_tail(self, lines: int = 15) -> str:
        if not self.ups:
            return ""
        return "\n".join(self.up.log().splitlines()[-lines:])


def _ours(pid: int, var_dir: Path) -> bool:
    """Alive, and started with this VAR_DIR (not a process that reused the pid)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return state != "Z" and f"VAR_DIR={var_dir}".encode() in environ


# ---------------------------------------------------------------------------------------------
# users and what they got


def setup_staff(api: SandboxAPI) -> None:
    """1002 /starts; the demo admin 1001 makes them staff (the README's walk-through)."""
    staff = Chat(api, STAFF)
    staff.say("/start")
    staff.wait("Hello")
    admin = Chat(api, ADMIN)
    admin.say("/start")
    admin.wait("Hello")
    admin.say(f"/grant {STAFF} staff")
    admin.wait("is now staff")


def matching(api: SandboxAPI, chat_id: int, pattern: re.Pattern[str]) -> list[Message]:
    return [m for m in api.messages(chat_id) if pattern.search(m.get("text") or "")]


class Arrivals(threading.Thread):
    """When each bot message matching `pattern` first reached one chat, by a long-poll that
    rides out the sandbox's restarts."""

    def __init__(self, api: SandboxAPI, chat_id: int, pattern: re.Pattern[str]) -> None:
        super().__init__(daemon=True, name=f"arrivals-{chat_id}")
        self.api, self.chat_id, self.pattern = api, chat_id, pattern
        self.cursor = max((m["seq"] for m in api.messages(chat_id)), default=0)
        self.first_seen: dict[int, float] = {}  # message_id -> perf_counter
        self.halt = threading.Event()

    def rewind(self) -> None:
        """Read the chat from its start again (after a restart; times already seen stay)."""
        self.cursor = 0

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                fresh = self.api.messages(self.chat_id, after=self.cursor, wait=1)
            except Exception:  # the sandbox is down or restarting
                time.sleep(0.05)
                continue
            now = time.perf_counter()
            for message in fresh:
                self.cursor = max(self.cursor, message["seq"])
                if self.pattern.search(message.get("text") or ""):
                    self.first_seen.setdefault(message["message_id"], now)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# the databases (read-only; `up` keeps running)


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def count(path: Path, sql: str, *params: object) -> int:
    with contextlib.closing(_ro(path)) as db:
        return int(db.execute(sql, params).fetchone()[0])


def broker_rows_before(var_dir: Path, moment: datetime) -> list[str]:
    """Messages in the embedded broker queued or handed out before `moment` and still there
    (acknowledged ones are deleted; `timestamp` is when a row was last handed out)."""
    with contextlib.closing(_ro(var_dir / "broker.sqlite3")) as db:
        rows = db.execute(
            "SELECT q.name, m.visible, m.timestamp, m.payload FROM kombu_message m"
            " LEFT JOIN kombu_queue q ON q.id = m.queue_id"
        ).fetchall()
    old = []
    for queue, visible, stamp, payload in rows:
        if stamp is not None and datetime.fromisoformat(str(stamp)) >= moment:
            continue
        try:
            task = json.loads(payload).get("headers", {}).get("task", "?")
        except ValueError:
            task = "?"
        state = "queued" if visible else "handed out"
        old.append(f"{queue} {task} {state} {str(stamp)[11:22]}")
    return old


@dataclass
class Snapshot:
    requests: int = 0
    created: int = 0  # "Request #N created" in the author's chat
    staff_notices: int = 0
    admin_notices: int = 0
    dead_outbox: int = 0
    dead_letters: int = 0
    unsent: int = 0  # outbox rows pending or being sent
    broker_old: list[str] = field(default_factory=list)
    dead_errors: list[str] = field(default_factory=list)
    unsent_rows: list[str] = field(default_factory=list)

    def complete(self) -> bool:
        return (
            self.created >= 1
            and self.staff_notices >= 1
            and self.admin_notices >= 1
            and self.unsent == 0
            and not self.broker_old
        )

    def waiting_for(self) -> str:
        """What keeps it from being complete."""
        missing = [
            who
            for who, got in (
                ("the author's reply", self.created),
                ("1002's notice", self.staff_notices),
                ("1001's notice", self.admin_notices),
            )
            if not got
        ]
        parts = [f"no {', '.join(missing)} yet"] if missing else []
        parts += [f"outbox {row}" for row in self.unsent_rows]
        parts += [f"broker message {row}" for row in self.broker_old]
        return "; ".join(parts)


def snapshot(machine: Machine, title: str, restarted_at: datetime) -> Snapshot:
    api, db = machine.api, machine.var_dir / "zavhoz.sqlite3"
    snap = Snapshot()
    snap.created = len(matching(api, RESIDENT, CREATED))
    snap.staff_notices = len(matching(api, STAFF, NOTICE))
    snap.admin_notices = len(matching(api, ADMIN, NOTICE))
    snap.requests = count(db, "SELECT count(*) FROM requests WHERE title = ?", title)
    snap.dead_outbox = count(db, "SELECT count(*) FROM outbox WHERE state = 'dead'")
    snap.dead_letters = count(db, "SELECT count(*) FROM dead_letters")
    snap.unsent = count(db, "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')")
    snap.broker_old = broker_rows_before(machine.var_dir, restarted_at)
    if snap.dead_outbox or snap.unsent:
        with contextlib.closing(_ro(db)) as conn:
            snap.dead_errors = [
                f"{chat}: {error}"
                for chat, error in conn.execute(
                    "SELECT chat_id, last_error FROM outbox WHERE state = 'dead' LIMIT 3"
                )
            ]
            snap.unsent_rows = [
                f"#{row[0]} to {row[1]} {row[2]} {row[3]} (attempts {row[4]}, created"
                f" {row[5]}, next attempt {row[6]}, error {row[7]})"
                for row in conn.execute(
                    "SELECT id, chat_id, method, state, attempts, created_at, next_attempt_at,"
                    " last_error FROM outbox WHERE state IN ('pending', 'sending') LIMIT 3"
                )
            ]
    return snap


# ---------------------------------------------------------------------------------------------
# 1. restarts


@dataclass
class Run:
    number: int
    stop: str
    after_s: float
    stop_s: float | None = None  # Ctrl-C until `up` exited
    stopped: bool = True
    left_after_stop: int = 0
    up_s: float | None = None  # first start to "zavhoz is up"
    up_again_s: float | None = None
    reply: str = "-"  # "before" the stop, "+12.3" s after the restart, or "never"
    recovery_s: float | None = None
    all_told: str = "-"  # the last of the reply and the two notices, the same way
    waited_for: str = ""  # what the settling waited for last
    settled_s: float | None = None  # restart to settled (None: timed out)
    snap: Snapshot | None = None
    error: str = ""

    def verdict(self) -> str:
        if self.error or self.snap is None:
            return "error"
        s = self.snap
        problems = []
        if s.requests == 0:
            problems.append("LOST")
        elif s.requests > 1:
            problems.append(f"DUPLICATED x{s.requests}")
        if s.created != 1:
            problems.append(f"author told x{s.created}")
        for who, got in (("staff", s.staff_notices), ("admin", s.admin_notices)):
            if got != 1:
                problems.append(f"{who} told x{got}")
        if s.dead_outbox:
            problems.append(f"{s.dead_outbox} dead")
        if s.dead_letters:
            problems.append(f"{s.dead_letters} dead letters")
        if s.unsent:
            problems.append(f"{s.unsent} unsent")
        return ", ".join(problems) or "ok"


def restart_run(tmp: Path, number: int, stop: str, after_s: float, args: argparse.Namespace) -> Run:
    run = Run(number, stop, after_s)
    machine = Machine(tmp / f"run-{number}", free_port())
    arrivals: list[Arrivals] = []
    title = f"Lamp {number} {stop} {after_s}"
    try:
        run.up_s = machine.start()
        setup_staff(machine.api)
        author = Chat(machine.api, RESIDENT)
        author.say("/start")
        author.wait("Hello")
        summary = fill_in(author, title)
        arrivals = [
            Arrivals(machine.api, chat, pattern)
            for chat, pattern in ((RESIDENT, CREATED), (STAFF, NOTICE), (ADMIN, NOTICE))
        ]
        for one in arrivals:
            one.start()
        author.press(summary, "Submit")
        time.sleep(after_s)
        stopped_at = time.perf_counter()
        if stop == "kill":
            machine.kill()
        else:
            run.stop_s, run.stopped = machine.ctrl_c()
            if not run.stopped:
                machine.kill()
        time.sleep(0.3)
        run.left_after_stop = len(machine.leftovers())
        if run.left_after_stop:  # reported; the restart needs the port
            machine.close()
        restarted, restarted_wall = time.perf_counter(), datetime.now()
        run.up_again_s = machine.start()
        for one in arrivals:
            one.rewind()
        deadline = restarted + args.settle_timeout_s
        complete_since: float | None = None
        while time.perf_counter() < deadline:
            snap = snapshot(machine, title, restarted_wall)
            if snap.complete():
                complete_since = complete_since or time.perf_counter()
                if time.perf_counter() - complete_since >= args.grace_s:
                    run.settled_s = complete_since - restarted
                    break
            else:
                complete_since = None
                run.waited_for = snap.waiting_for()
            time.sleep(0.5)
        run.snap = snapshot(machine, title, restarted_wall)
        if not run.snap.complete():
            run.waited_for = run.snap.waiting_for()

        def when(at: float | None) -> str:
            if at is None:
                return "never"
            if at < stopped_at:
                return "before"
            if at < restarted:
                # Seen by the long-poll after the stop began: a Ctrl-C's orderly stop sent
                # it, or (a kill) the sandbox had it when it died.
                return "stopping" if stop == "ctrl-c" else "before"
            return f"+{at - restarted:.1f}"

        firsts = [min(one.first_seen.values(), default=None) for one in arrivals]
        run.reply = when(firsts[0])
        if run.reply.startswith("+") and firsts[0] is not None:
            run.recovery_s = firsts[0] - restarted
        run.all_told = when(None if None in firsts else max(t for t in firsts if t is not None))
    except Exception as exc:  # a failed run is a result; the others go on
        run.error = f"{type(exc).__name__}: {exc}"[:300]
        print(f"   run {number} failed: {run.error}\n{machine.log_tail()}", flush=True)
    finally:
        for one in arrivals:
            one.stop()
        machine.close()
    return run


# ---------------------------------------------------------------------------------------------
# 2. order


@dataclass
class Try:
    number: int
    user: int
    request: int | None = None
    created_id: int | None = None  # message ids in the resident's chat
    listing_id: int | None = None
    listed: bool = False  # the first /my listing shows #N
    created_s: float | None = None  # Submit pressed -> "Request #N created" seen here
    listing_s: float | None = None  # Submit pressed -> the /my listing seen here
    error: str = ""

    def result(self) -> str:
        if self.error:
            return "error"
        if not self.listed:
            return "/my before the Submit"
        assert self.created_id is not None and self.listing_id is not None
        return "OUT OF ORDER" if self.listing_id < self.created_id else "in order"


def listing_shows(message: Message, request: int) -> bool:
    return any(f"#{request}" in b.get("text", "") for b in Chat.buttons(message))


def order_try(api: SandboxAPI, number: int) -> Try:
    user = FIRST_ORDER_RESIDENT + number
    one = Try(number, user)
    try:
        chat = Chat(api, user)
        chat.say("/start")
        chat.wait("Hello")
        summary = fill_in(chat, f"Order {number}")
        pressed = time.perf_counter()
        chat.press(summary, "Submit")
        chat.say("/my")
        deadline = time.monotonic() + 60

        def is_listing(m: Message) -> bool:
            text = m.get("text") or ""
            return "Your requests" in text or "no requests yet" in text

        created = listing = None
        cursor = chat.seen
        while time.monotonic() < deadline:
            got = api.messages(user)
            created = next((m for m in got if CREATED.search(m.get("text") or "")), None)
            listing = next((m for m in got if is_listing(m)), None)
            seen = time.perf_counter() - pressed
            if created and one.created_s is None:
                one.created_s = seen
            if listing and one.listing_s is None:
                one.listing_s = seen
            if created and listing:
                break
            cursor = max([cursor, *(m["seq"] for m in got)])
            api.messages(user, after=cursor, wait=0.5)  # until something new comes
        if created is None or listing is None:
            missing = "Request #N created" if created is None else "the /my listing"
            raise TimeoutError(f"{missing} never came in 60 s")
        found = CREATED.search(created.get("text") or "")
        assert found is not None
        one.request = int(found.group(1))
        one.created_id, one.listing_id = created["message_id"], listing["message_id"]
        one.listed = listing_shows(listing, one.request)
    except Exception as exc:
        one.error = f"{type(exc).__name__}: {exc}"[:300]
    return one


# ---------------------------------------------------------------------------------------------
# reporting


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_row(run: Run) -> list[object]:
    s = run.snap or Snapshot()
    stop_took = fmt(run.stop_s, 2) + ("" if run.stopped else " (hung)")
    return [
        run.number,
        run.stop,
        f"{run.after_s:g}",
        stop_took if run.stop == "ctrl-c" else "-",
        run.left_after_stop,
        fmt(run.up_s),
        fmt(run.up_again_s),
        s.requests,
        s.created,
        s.staff_notices,
        s.admin_notices,
        s.dead_outbox,
        s.dead_letters,
        s.unsent,
        run.reply,
        run.all_told,
        fmt(run.recovery_s - run.up_again_s) if run.recovery_s and run.up_again_s else "-",
        fmt(run.settled_s) if run.settled_s is not None else "timeout",
        run.verdict(),
    ]


RUN_HEADERS = [
    "run",
    "stop",
    "after s",
    "Ctrl-C->exit s",
    "left",
    "up s",
    "up again s",
    "requests",
    "created",
    "1002",
    "1001",
    "dead",
    "dead letters",
    "unsent",
    "reply s",
    "all told s",
    "after up s",
    "settled s",
    "verdict",
]


def print_restarts(runs: list[Run], args: argparse.Namespace) -> str:
    print(
        f"1. Restarts around a Submit: {len(runs)} run(s), stops {','.join(args.stops)},"
        f" delays {','.join(f'{d:g}' for d in args.delays)} s after the press"
    )
    print(table(RUN_HEADERS, [run_row(r) for r in runs], left=2))
    print(
        "   requests: rows with the run's title (want 1); created: 'Request #N created' in the"
        " author's chat; 1002/1001: 'New request #N' to staff/admin (want 1 each); dead: outbox"
        " rows dead; unsent: pending or sending at the end; left: processes of up alive 0.3 s"
        " after the stop; up s / up again s: start / restart to 'zavhoz is up'; reply s: the"
        " author's reply, seconds after `up` was started again ('before': it came before the"
        " stop, 'stopping': during Ctrl-C's orderly stop); all told s: the same for the last of the"
        " reply and the two notices; after up s: the same from 'zavhoz is"
        " up'; settled s: restart to nothing left in flight"
    )
    for run in runs:
        if run.snap and run.snap.dead_errors:
            print(f"   run {run.number} dead rows: {'; '.join(run.snap.dead_errors)}")
        if run.waited_for and (run.settled_s is None or run.settled_s > 30):
            print(f"   run {run.number} waited for: {run.waited_for}")
        if run.error:
            print(f"   run {run.number} error: {run.error}")
    done = [r for r in runs if r.snap is not None and not r.error]
    snaps = [r.snap for r in done if r.snap is not None]
    lost = sum(1 for s in snaps if s.requests == 0)
    duplicated = sum(1 for s in snaps if s.requests > 1)
    told_missing = sum(1 for s in snaps if s.created == 0)
    told_twice = sum(1 for s in snaps if s.created > 1)
    notices_missing = sum((s.staff_notices == 0) + (s.admin_notices == 0) for s in snaps)
    notices_doubled = sum((s.staff_notices > 1) + (s.admin_notices > 1) for s in snaps)
    dead = sum(s.dead_outbox for s in snaps)
    letters = sum(s.dead_letters for s in snaps)
    unsent = sum(s.unsent for s in snaps)
    recoveries = [r.recovery_s for r in done if r.recovery_s is not None]
    before = sum(1 for r in done if r.reply == "before")
    stopping = sum(1 for r in done if r.reply == "stopping")
    ups = [r.up_s for r in done if r.up_s is not None]
    agains = [r.up_again_s for r in done if r.up_again_s is not None]
    hung = sum(1 for r in runs if not r.stopped)
    left = sum(r.left_after_stop for r in runs)
    errors = len(runs) - len(done)
    rec = (
        f"p50 {pct(recoveries, 0.5):.1f} s, max {max(recoveries):.1f} s"
        f" ({len(recoveries)} replied after the restart, {stopping} during Ctrl-C's stop,"
        f" {before} before the stop)"
        if recoveries
        else f"- (none replied after the restart; {stopping} during the stop, {before} before)"
    )
    if ups and agains:
        rec += (
            f"; start to 'zavhoz is up' p50 {pct(ups, 0.5):.1f} s,"
            f" restart p50 {pct(agains, 0.5):.1f} s (max {max(agains):.1f} s)"
        )
    summary = (
        f"restarts: {len(done)} runs ({errors} errors), {lost} lost, {duplicated} duplicated;"
        f" author told 0x in {told_missing}, 2x+ in {told_twice};"
        f" notices missing {notices_missing}, doubled {notices_doubled} (of {2 * len(snaps)});"
        f" dead outbox rows {dead}, dead letters {letters}, unsent at the end {unsent};"
        f" Ctrl-C hung {hung}, processes left after a stop {left};"
        f" time to recovery (restart -> author's reply) {rec}"
    )
    print(f"   {summary}")
    return summary


def print_order(tries: list[Try]) -> str:
    print(f"2. Order: {len(tries)} tries of Submit then /my at once, one `up`")
    rows = [
        [t.number, t.user, t.request or "-", t.created_id or "-", t.listing_id or "-", t.result()]
        for t in tries
        if t.result() != "in order"
    ]
    if rows:
        print(
            table(
                ["try", "user", "request", "created msg id", "listing msg id", "result"],
                rows,
            )
        )
    for one in tries:
        if one.error:
            print(f"   try {one.number} error: {one.error}")
    out = sum(1 for t in tries if t.result() == "OUT OF ORDER")
    early = sum(1 for t in tries if t.result() == "/my before the Submit")
    errors = sum(1 for t in tries if t.error)
    created = [t.created_s for t in tries if t.created_s is not None]
    listed = [t.listing_s for t in tries if t.listing_s is not None]
    latency = (
        f"; Submit -> 'Request #N created' p50 {pct(created, 0.5):.3f} s, max"
        f" {max(created):.3f} s; -> the /my listing p50 {pct(listed, 0.5):.3f} s, max"
        f" {max(listed):.3f} s"
        if created and listed
        else ""
    )
    summary = (
        f"order: {len(tries)} tries, {out} out of order (the listing with #N before"
        f" 'Request #N created'), {early} /my applied before the Submit, {errors} errors" + latency
    )
    print(f"   {summary}")
    return summary


# ---------------------------------------------------------------------------------------------
# the run


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def stops(text: str) -> list[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    for one in chosen:
        if one not in STOPS:
            raise argparse.ArgumentTypeError(f"{one!r}: stops are {', '.join(STOPS)}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="restart runs (0: none)")
    parser.add_argument("--tries", type=int, default=30, help="Submit-then-/my tries (0: none)")
    parser.add_argument("--delays", type=floats, default=[0.02, 0.05, 0.1, 0.2, 0.8])
    parser.add_argument("--stops", type=stops, default=list(STOPS))
    parser.add_argument("--settle-timeout-s", type=float, default=150.0)
    parser.add_argument("--grace-s", type=float, default=3.0, help="settled for this long")
    parser.add_argument("--keep", action="store_true", help="keep the temporary VAR_DIRs")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    print("command: .venv/bin/python -m bench.embedded_restarts " + shlex.join(given), flush=True)
    print(
        f"options: --runs {args.runs} --tries {args.tries}"
        f" --delays {','.join(f'{d:g}' for d in args.delays)} --stops {','.join(args.stops)}"
        f" --settle-timeout-s {args.settle_timeout_s:g} --grace-s {args.grace_s:g}",
        flush=True,
    )
    for name in NOT_EMBEDDED:  # `up` inherits this environment
        os.environ.pop(name, None)
    tmp = Path(tempfile.mkdtemp(prefix="zavhoz-bench-restarts-"))
    os.chdir(tmp)  # no .env of the repository's reaches `up`
    # A SIGTERM to the bench cleans up as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"logs and VAR_DIRs under {tmp}", flush=True)
    started = time.monotonic()
    runs: list[Run] = []
    tries: list[Try] = []
    keep = args.keep
    try:
        for i in range(args.runs):
            stop = args.stops[i % len(args.stops)]
            after_s = args.delays[(i // len(args.stops)) % len(args.delays)]
            print(f"run {i + 1}/{args.runs}: Submit, {stop} after {after_s:g} s", flush=True)
            run = restart_run(tmp, i + 1, stop, after_s, args)
            runs.append(run)
            keep = keep or bool(run.error)
            print(
                f"   {run.verdict()}: requests {run.snap.requests if run.snap else '-'},"
                f" reply {run.reply}, up again {fmt(run.up_again_s)} s,"
                f" settled {fmt(run.settled_s) if run.settled_s is not None else 'timeout'}"
                f" ({time.monotonic() - started:.0f} s so far)",
                flush=True,
            )
        if args.tries > 0:
            print(f"order: one `up`, {args.tries} tries", flush=True)
            machine = Machine(tmp / "order", free_port())
            try:
                machine.start()
                setup_staff(machine.api)
                for i in range(args.tries):
                    one = order_try(machine.api, i + 1)
                    tries.append(one)
                    print(
                        f"   try {i + 1}/{args.tries}: #{one.request or '-'} {one.result()}"
                        f" (created {fmt(one.created_s, 3)} s, listing {fmt(one.listing_s, 3)} s"
                        " after the press)" + (f" ({one.error})" if one.error else ""),
                        flush=True,
                    )
            except Exception:
                keep = True
                print(f"order setup failed; up's log ends:\n{machine.log_tail()}", flush=True)
                raise
            finally:
                machine.close()
    finally:
        os.chdir("/")
        if keep:
            print(f"kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    summaries = []
    if runs:
        summaries.append(print_restarts(runs, args))
        print()
    if tries:
        summaries.append(print_order(tries))
        print()
    print(f"summary ({time.monotonic() - started:.0f} s): " + "; ".join(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
