"""`zavhoz up` (= `make run`) on embedded defaults under load, idle, and restarted.

    .venv/bin/python -m bench.embedded [--load-s 60] [--idle-s 60] [--submit-rate 1.5]
                                       [--my-rate 1.0] [--residents 20] [--drain-timeout-s 120]
                                       [--baseline-idle-s 30] [--keep]

About 5.5 minutes with the defaults (less when the staff notices drain quickly).

Starts `python -m zavhoz up --sandbox-port PORT` (a free port, a fresh temporary VAR_DIR, no
DATABASE_URL / REDIS_URL / BOT_TOKEN / ADMIN_IDS: the sandbox, SQLite, the embedded broker, one
threaded worker, beat and the bot) and drives users through the sandbox's control API:

1. Load. Admin 1001 /starts and grants staff to 2001 and 2002 (who /start first); the
   residents (3001...) /start. Then for --load-s seconds an open loop (a thread per resident;
   each scheduled action takes the next free resident) runs full /new dialogs at
   --submit-rate in total (Submit latency: pressing Submit to "Request #N created." in that
   chat) and, between dialogs, /my at --my-rate (latency: sending to the first new bot message
   in that chat). Staff notices ("New request #N") are timed as they reach each staff chat;
   their lag is from the request's Submit press, and they are paced by the system at 1/s per
   private chat (burst 3), so a backlog is expected. The load counts as drained when every
   created request has reached both staff chats (or after --drain-timeout-s). Admin 1001 is
   watched too (it gets the notices as well). The sandbox's 429s are listed by chat.
2. Disk: the four SQLite files (and their -wal) right after start, at the end of the load and
   after the idle minute; rows in the broker's `kombu_message` (read-only connection) at the
   end of the load, once drained and after the idle minute; the broker's indexes and the plan
   of its poll query.
3. Idle: CPU (utime + stime from /proc/<pid>/stat, children of each child included) of every
   child of `up` (sandbox, worker, beat, bot) and of `up` itself over --idle-s seconds after
   the drain with no traffic from here, as % of one core; also --baseline-idle-s before the
   load (users set up, nothing pending) and during the load, for comparison. The messages the
   system still sent during the idle minute (a notice backlog left after the drain timeout)
   and the outbox rows unsent at its start and end are shown with it. Lines `up` printed
   (stdout and stderr, its children's included) during the load and its drain and while idle.
4. Restart: Ctrl-C (SIGINT to the `up` process group), the time until `up` exits and whether
   every child is gone; `up` again on the same VAR_DIR and port, time to "zavhoz is up"; then
   the resident with the most requests sends /my: does the answer list their requests (its
   buttons), and how fast. Then Ctrl-C again (timed too).

Prints one table per part and a one-line summary. Latencies are taken in this process (the
long-poll's return), so they include a few ms of client overhead. Exits non-zero only when
the setup fails, never on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import queue
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.windows import busiest
from tests.support.sandbox_api import SandboxAPI

CREATED = re.compile(r"Request #(\d+) created\.")
NOTICE = re.compile(r"New request #(\d+)")
ADMIN = 1001
STAFF = (2001, 2002)
FIRST_RESIDENT = 3001
DB_FILES = ("zavhoz.sqlite3", "broker.sqlite3", "sandbox.sqlite3", "dialogs.sqlite3")
CHILD_NAMES = ("sandbox", "worker", "beat", "bot")
# Settings that would take `up` off its embedded defaults.
NOT_EMBEDDED = ("DATABASE_URL", "REDIS_URL", "BOT_TOKEN", "ADMIN_IDS", "TELEGRAM_API_URL")
CLK = os.sysconf("SC_CLK_TCK")

Message = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()  # fields from the 3rd on (state is [0])


def _ppids() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = int(stat[1])
    return found


def _descendants(pid: int, ppids: dict[int, int]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in ppids.items() if pp == parent]
        out += kids
        todo += kids
    return out


def _cpu_s(pid: int) -> float:
    stat = _stat(pid)
    if stat is None:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / CLK  # utime, stime (fields 14 and 15)


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _is_ours(pid: int) -> bool:
    try:
        return b"zavhoz" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Up:
    """One `zavhoz up`, its output in a file; knows its children by name."""

    def __init__(self, var_dir: Path, port: int, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in NOT_EMBEDDED}
        env["VAR_DIR"] = str(var_dir)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "zavhoz", "up", "--sandbox-port", str(port)],
            env=env,
            cwd=var_dir.parent,  # no .env of the repository's
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.seen_pids: set[int] = set()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> int:
        return self.log_path.read_bytes().count(b"\n")

    def wait_up(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "zavhoz is up" in self.text():
                self.children()
                return time.monotonic() - self.started
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"zavhoz up did not come up:\n{self.text()[-4000:]}")

    def children(self) -> dict[str, list[int]]:
        """Each child of `up` by its command (sandbox, worker, ...): its pid and descendants'."""
        ppids = _ppids()
        named: dict[str, list[int]] = {}
        for pid, ppid in ppids.items():
            if ppid != self.pid:
                continue
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            name = argv[3].decode() if len(argv) > 3 else f"pid {pid}"
            named[name] = [pid, *_descendants(pid, ppids)]
            self.seen_pids.update(named[name])
        return named

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of `up` itself and each child (with its descendants)."""
        out = {"up": _cpu_s(self.pid)}
        for name, pids in self.children().items():
            out[name] = sum(_cpu_s(p) for p in pids)
        return out

    def ctrl_c(self, timeout: float = 90) -> float:
        started = time.monotonic()
        os.killpg(self.pid, signal.SIGINT)  # what a terminal sends its foreground group
        self.popen.wait(timeout=timeout)
        return time.monotonic() - started

    def leftovers(self) -> list[int]:
        return [p for p in self.seen_pids if _alive(p) and _is_ours(p)]

    def kill_all(self) -> None:
        """Every process of this `up` (its children run in sessions of their own)."""
        with contextlib.suppress(Exception):
            self.children()
        for pid in self.seen_pids:
            if _alive(pid) and _is_ours(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
        self._log.close()


# ---------------------------------------------------------------------------------------------
# users


class User:
    """A sandbox user who says things and waits for the bot's answers, timing their arrival."""

    actions = 0  # messages and presses sent by every user
    _count = threading.Lock()

    def __init__(self, api: SandboxAPI, user_id: int) -> None:
        self.api, self.id = api, user_id
        self.profile = {"first_name": f"u{user_id}", "username": f"u{user_id}"}
        self.seen = self.latest()

    def latest(self) -> int:
        return max((m["seq"] for m in self.api.messages(self.id)), default=0)

    def say(self, text: str) -> float:
        """Sends; returns the moment just before the send."""
        sent = time.perf_counter()
        self.api.send_text(self.id, text, **self.profile)
        self._counted()
        return sent

    def _counted(self) -> None:
        with User._count:
            User.actions += 1

    def press(self, message: Message, label: str) -> float:
        markup = message.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            for button in row:
                if label in button["text"]:
                    pressed = time.perf_counter()
                    self.api.press(self.id, message["message_id"], button["callback_data"])
                    self._counted()
                    return pressed
        raise AssertionError(f"user {self.id}: no button {label!r} in {markup}")

    def wait(
        self, match: str | Callable[[Message], bool], timeout: float = 30
    ) -> tuple[Message, float]:
        """The first bot message after the last one waited for that matches; and when it came."""
        test = (lambda m: match in (m.get("text") or "")) if isinstance(match, str) else match
        cursor = self.seen
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"user {self.id} never got {match!r} in {timeout:.0f} s")
            fresh = self.api.messages(self.id, after=cursor, wait=min(left, 10))
            arrived = time.perf_counter()
            for message in fresh:
                cursor = max(cursor, message["seq"])
                if test(message):
                    self.seen = max(self.seen, message["seq"])
                    return message, arrived


def ask(user: User, text: str, timeout: float = 60) -> tuple[Message, float]:
    """Sends `text`; the first new bot message in that chat after the send, and the latency."""
    baseline = user.latest()
    user.seen = baseline
    sent = user.say(text)
    message, arrived = user.wait(lambda m: m["seq"] > baseline and not m.get("edited"), timeout)
    return message, arrived - sent


def buttons(message: Message) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("text", "") for row in markup.get("inline_keyboard", []) for b in row]


# ---------------------------------------------------------------------------------------------
# load


@dataclass
class Outcome:
    kind: str  # submit | my
    user: int
    late_s: float  # how long the action waited for a free resident after its scheduled time
    latency_s: float | None = None
    dialog_s: float | None = None  # /new to the summary (the bot's own steps)
    request: int | None = None
    pressed_at: float | None = None
    ok: bool = False
    error: str = ""
    started_at: float = 0.0


def submit(user: User, n: int, outcome: Outcome) -> None:
    started = user.say("/new")
    user.wait("What is the problem?")
    user.say(f"Bench lamp {n} of {user.id}")
    user.wait("Describe the problem")
    user.say("It flickers")
    user.wait("Where is it?")
    user.say(f"Room {100 + n % 50}")
    user.press(user.wait("How urgent")[0], "Normal")
    user.press(user.wait("Add photos")[0], "Skip")
    summary, shown = user.wait("Check your request")
    outcome.dialog_s = shown - started
    pressed = user.press(summary, "Submit")
    created, arrived = user.wait(lambda m: CREATED.search(m.get("text") or "") is not None, 120)
    found = CREATED.search(created.get("text") or "")
    assert found is not None
    outcome.request = int(found.group(1))
    outcome.pressed_at = pressed
    outcome.latency_s = arrived - pressed
    outcome.ok = True


def show_my(user: User, outcome: Outcome) -> None:
    reply, latency = ask(user, "/my")
    outcome.latency_s = latency
    text = reply.get("text") or ""
    outcome.ok = "Your requests" in text or "no requests yet" in text
    if not outcome.ok:
        outcome.error = f"unexpected first reply {text[:60]!r}"


class NoticeWatcher(threading.Thread):
    """Times every "New request #N" reaching one chat (first delivery of each N)."""

    def __init__(self, api: SandboxAPI, chat_id: int) -> None:
        super().__init__(daemon=True, name=f"notices-{chat_id}")
        self.api, self.chat_id = api, chat_id
        self.cursor = max((m["seq"] for m in api.messages(chat_id)), default=0)
        self.arrived: dict[int, float] = {}
        self.duplicates = 0
        self.stop = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                fresh = self.api.messages(self.chat_id, after=self.cursor, wait=1)
            except OSError:
                self.errors += 1
                time.sleep(0.5)
                continue
            now = time.perf_counter()
            for message in fresh:
                self.cursor = max(self.cursor, message["seq"])
                found = NOTICE.search(message.get("text") or "")
                if found is None or message.get("edited"):
                    continue
                n = int(found.group(1))
                if n in self.arrived:
                    self.duplicates += 1
                else:
                    self.arrived[n] = now


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0  # perf_counter
    started_wall: float = 0.0
    ended: float = 0.0  # the last scheduled action done (or given up on)


def run_load(
    api: SandboxAPI, residents: list[User], load_s: float, submit_rate: float, my_rate: float
) -> Load:
    events = [(i / submit_rate, "submit") for i in range(int(load_s * submit_rate))]
    events += [((j + 0.5) / my_rate, "my") for j in range(int(load_s * my_rate))]
    events.sort()
    free: queue.Queue[User] = queue.Queue()
    for user in residents:
        free.put(user)
    load = Load(started=time.perf_counter(), started_wall=time.time())
    counter = iter(range(1, 1_000_000))

    def act(kind: str, user: User, outcome: Outcome) -> None:
        try:
            if kind == "submit":
                submit(user, next(counter), outcome)
            else:
                show_my(user, outcome)
        except Exception as exc:  # a failed action is a result, not a crash
            outcome.error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            free.put(user)

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=len(residents), thread_name_prefix="resident") as pool:
        for at, kind in events:
            due = load.started + at
            time.sleep(max(0.0, due - time.perf_counter()))
            user = free.get()
            now = time.perf_counter()
            outcome = Outcome(kind, user.id, late_s=now - due, started_at=now)
            load.outcomes.append(outcome)
            futures.append(pool.submit(act, kind, user, outcome))
        for future in futures:
            future.result()
    load.ended = time.perf_counter()
    return load


# ---------------------------------------------------------------------------------------------
# disk


def file_sizes(var_dir: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for name in DB_FILES:
        main, wal = var_dir / name, var_dir / f"{name}-wal"
        out[name] = (
            main.stat().st_size if main.exists() else -1,
            wal.stat().st_size if wal.exists() else 0,
        )
    return out


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def broker_rows(var_dir: Path) -> tuple[int, int] | str:
    """(rows, of which still visible) in kombu_message, or why not."""
    try:
        with contextlib.closing(_ro(var_dir / "broker.sqlite3")) as db:
            total, visible = db.execute(
                "SELECT count(*), coalesce(sum(visible), 0) FROM kombu_message"
            ).fetchone()
    except sqlite3.Error as exc:
        return f"error: {exc}"
    return int(total), int(visible)


def broker_plan(var_dir: Path) -> tuple[list[str], str]:
    """The broker table's indexes and the plan of its poll (as the transport's _get asks)."""
    try:
        with contextlib.closing(_ro(var_dir / "broker.sqlite3")) as db:
            indexes = [
                f"{name}({', '.join(r[2] for r in db.execute(f'PRAGMA index_info({name!r})'))})"
                for (name,) in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index'"
                    " AND tbl_name = 'kombu_message' ORDER BY name"
                )
            ]
            plan = db.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM kombu_message WHERE queue_id = 1"
                " AND visible = 1 ORDER BY timestamp, id LIMIT 1"
            ).fetchall()
    except sqlite3.Error as exc:
        return [], f"error: {exc}"
    return indexes, "; ".join(str(row[-1]) for row in plan)


def requests_in_db(var_dir: Path) -> int | str:
    try:
        with contextlib.closing(_ro(var_dir / "zavhoz.sqlite3")) as db:
            return int(db.execute("SELECT count(*) FROM requests").fetchone()[0])
    except sqlite3.Error as exc:
        return f"error: {exc}"


def outbox_unsent(var_dir: Path) -> int | str:
    """Outbox rows still to go (pending or being sent)."""
    try:
        with contextlib.closing(_ro(var_dir / "zavhoz.sqlite3")) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')"
                ).fetchone()[0]
            )
    except sqlite3.Error as exc:
        return f"error: {exc}"


@dataclass
class Idle:
    seconds: float
    cpu: dict[str, float]  # fraction of one core
    lines: list[str]
    wall: tuple[float, float]  # time.time() span, for the sandbox's send log
    unsent: tuple[int | str, int | str]  # outbox rows still to go at its start and end


def measure_idle(up: Up, var_dir: Path, seconds: float) -> Idle:
    """CPU and output of every process of `up` while this process leaves the sandbox alone."""
    unsent_before = outbox_unsent(var_dir)
    lines_before = up.lines()
    before, t0, wall0 = up.cpu(), time.monotonic(), time.time()
    time.sleep(seconds)
    after, span, wall1 = up.cpu(), time.monotonic() - t0, time.time()
    lines = up.text().splitlines()[lines_before:]
    cpu = {name: (after.get(name, 0) - before.get(name, 0)) / span for name in after}
    return Idle(span, cpu, lines, (wall0, wall1), (unsent_before, outbox_unsent(var_dir)))


EVENT = re.compile(r'"event":\s*"([^"]+)"')


def line_kinds(lines: Sequence[str]) -> str:
    kinds: dict[str, int] = {}
    for line in lines:
        found = EVENT.search(line)
        kind = found.group(1) if found else (line.strip()[:40] or "(blank)")
        kinds[kind] = kinds.get(kind, 0) + 1
    ranked = sorted(kinds.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} x{v}" for k, v in ranked[:8]) or "none"


def role(chat: int | None) -> str:
    return "staff" if chat in STAFF else "admin" if chat == ADMIN else "resident"


# ---------------------------------------------------------------------------------------------
# reporting


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    """Fixed-width columns: the first `left` aligned left, the rest right."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        padded = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return " | ".join(padded).rstrip()

    out = [line(cells[0]), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in cells[1:]]
    return "\n".join(out)


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def latency_row(name: str, values: list[float], failed: int) -> list[object]:
    if not values:
        return [name, 0, failed, "-", "-", "-", "-"]
    return [
        name,
        len(values),
        failed,
        fmt_s(pct(values, 0.5)),
        fmt_s(pct(values, 0.95)),
        fmt_s(max(values)),
        fmt_s(sum(values) / len(values)),
    ]


def kib(size: int) -> str:
    return "absent" if size < 0 else f"{size / 1024:.1f}"


# ---------------------------------------------------------------------------------------------
# the run


def setup_users(api: SandboxAPI, residents: int) -> tuple[User, list[User], list[User]]:
    admin = User(api, ADMIN)
    admin.say("/start")
    admin.wait("Hello")
    staff = []
    for user_id in STAFF:
        member = User(api, user_id)
        member.say("/start")
        member.wait("Hello")
        admin.say(f"/grant {user_id} staff")
        admin.wait("is now staff")
        staff.append(member)
    people = [User(api, FIRST_RESIDENT + i) for i in range(residents)]
    for person in people:
        person.say("/start")
    for person in people:
        person.wait("Hello")
    return admin, staff, people


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-s", type=float, default=60.0)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--submit-rate", type=float, default=1.5, help="Submits per second")
    parser.add_argument("--my-rate", type=float, default=1.0, help="/my per second")
    parser.add_argument("--residents", type=int, default=20)
    parser.add_argument("--drain-timeout-s", type=float, default=120.0)
    parser.add_argument(
        "--baseline-idle-s", type=float, default=30.0, help="idle measured before the load too"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary VAR_DIR")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="zavhoz-bench-embedded-"))
    var_dir = tmp / "var"
    port = free_port()
    api = SandboxAPI(f"http://127.0.0.1:{port}")
    ups: list[Up] = []
    watchers: list[NoticeWatcher] = []
    bench_started = time.monotonic()
    print(f"VAR_DIR {var_dir}, sandbox port {port}", flush=True)
    try:
        # ---- start
        up = Up(var_dir, port, tmp / "up-1.log")
        ups.append(up)
        up_s = up.wait_up()
        sizes_start = file_sizes(var_dir)
        print(f"up in {up_s:.1f} s; setting up users", flush=True)
        _, _, residents = setup_users(api, args.residents)
        random.Random(7).shuffle(residents)
        if args.baseline_idle_s > 0:
            print(f"idle before the load: {args.baseline_idle_s:.0f} s", flush=True)
            time.sleep(3)
            baseline = measure_idle(up, var_dir, args.baseline_idle_s)
        else:
            baseline = None
        watchers = [NoticeWatcher(api, chat) for chat in (*STAFF, ADMIN)]
        for watcher in watchers:
            watcher.start()

        # ---- 1. load
        print(f"load: {args.load_s:.0f} s", flush=True)
        lines_before_load, actions_before_load = up.lines(), User.actions
        cpu_before_load = up.cpu()
        load = run_load(api, residents, args.load_s, args.submit_rate, args.my_rate)
        load_span = load.ended - load.started
        cpu_after_load = up.cpu()
        rows_load = broker_rows(var_dir)
        sizes_load = file_sizes(var_dir)
        load_end_mark = load.started + args.load_s
        notices_at_end = {
            w.chat_id: sum(1 for t in w.arrived.values() if t <= load_end_mark) for w in watchers
        }
        notices_at_done = {w.chat_id: len(w.arrived) for w in watchers}
        created = {o.request: o for o in load.outcomes if o.kind == "submit" and o.ok}

        # ---- drain: every created request at both staff chats
        print("draining the staff notices", flush=True)
        deadline = time.perf_counter() + args.drain_timeout_s
        while time.perf_counter() < deadline:
            if all(set(created) <= set(w.arrived) for w in watchers if w.chat_id in STAFF):
                break
            time.sleep(0.5)
        drained_s = time.perf_counter() - load.ended
        time.sleep(3)  # anything else in flight (edits, the last acks)
        for watcher in watchers:
            watcher.stop.set()
        for watcher in watchers:
            watcher.join(timeout=5)
        load_lines = up.text().splitlines()[lines_before_load:]
        lines_load = len(load_lines)
        actions_load = User.actions - actions_before_load
        sends = api._call("GET", "/sandbox/sends")["sends"]
        stats = api.stats()
        rows_drained = broker_rows(var_dir)
        db_requests = requests_in_db(var_dir)

        # ---- 3. idle (no HTTP to the sandbox from here)
        print(f"idle: {args.idle_s:.0f} s", flush=True)
        time.sleep(2)
        idle = measure_idle(up, var_dir, args.idle_s)
        idle_sends = [
            x
            for x in api._call("GET", "/sandbox/sends")["sends"]
            if idle.wall[0] <= x["t"] <= idle.wall[1] and x["accepted"]
        ]
        rows_idle = broker_rows(var_dir)
        sizes_idle = file_sizes(var_dir)
        indexes, plan = broker_plan(var_dir)

        # ---- 4. restart
        print("restart", flush=True)
        up.children()
        stop_s = up.ctrl_c()
        time.sleep(0.5)
        left_after_stop = up.leftovers()
        up2 = Up(var_dir, port, tmp / "up-2.log")
        ups.append(up2)
        up2_s = up2.wait_up()
        authors = [o.user for o in created.values()]
        probe_id = max(sorted(set(authors)), key=authors.count, default=FIRST_RESIDENT)
        probe = User(api, probe_id)
        mine = authors.count(probe_id)
        try:
            reply, my_after_s = ask(probe, "/my", timeout=120)
            listed = [b for b in buttons(reply) if "#" in b]
            my_text = (reply.get("text") or "").splitlines()[0]
            my_ok = "Your requests" in my_text and (bool(listed) or mine == 0)
        except Exception as exc:  # reported as "no"
            my_after_s, listed, my_text, my_ok = None, [], f"{type(exc).__name__}: {exc}", False
        stop2_s = up2.ctrl_c()
    finally:
        for watcher in watchers:
            watcher.stop.set()
        for one in ups:
            one.kill_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    total_s = time.monotonic() - bench_started

    # ---------------------------------------------------------------- tables
    submits = [o for o in load.outcomes if o.kind == "submit"]
    mys = [o for o in load.outcomes if o.kind == "my"]
    sub_lat = [o.latency_s for o in submits if o.ok and o.latency_s is not None]
    my_lat = [o.latency_s for o in mys if o.ok and o.latency_s is not None]
    dialogs = [o.dialog_s for o in submits if o.dialog_s is not None]
    late = [o.late_s for o in load.outcomes]
    print()
    print(
        f"1. Load: {len(submits)} Submits ({args.submit_rate}/s) and {len(mys)} /my"
        f" ({args.my_rate}/s) scheduled over {args.load_s:.0f} s by {args.residents} residents;"
        f" all done {load_span:.1f} s after the start; staff {', '.join(map(str, STAFF))}"
    )
    print(
        table(
            ["latency (s)", "n ok", "failed", "p50", "p95", "max", "mean"],
            [
                latency_row("Submit -> Request #N created", sub_lat, len(submits) - len(sub_lat)),
                latency_row("/my -> first reply", my_lat, len(mys) - len(my_lat)),
                latency_row("(dialog /new -> summary)", dialogs, 0),
                latency_row("(start late: no free resident)", late, 0),
            ],
        )
    )
    for o in load.outcomes:
        if o.error:
            print(f"  failed {o.kind} by {o.user}: {o.error}")
    print()
    rows = []
    for watcher in watchers:
        times = [watcher.arrived[n] for n in created if n in watcher.arrived]
        lags = [
            watcher.arrived[n] - o.pressed_at
            for n, o in created.items()
            if n in watcher.arrived and o.pressed_at is not None
        ]
        server = sorted(
            s["t"]
            for s in sends
            if s["chat_id"] == watcher.chat_id
            and s["accepted"]
            and s["t"] >= load.started_wall
            and (s["method"] or "").startswith("send")
        )
        span = (max(times) - min(times)) if len(times) > 1 else 0.0
        rows.append(
            [
                f"{watcher.chat_id} ({role(watcher.chat_id)})",
                f"{notices_at_end[watcher.chat_id]}/{len(created)}",
                f"{notices_at_done[watcher.chat_id]}/{len(created)}",
                f"{len(times)}/{len(created)}",
                watcher.duplicates,
                fmt_s(pct(lags, 0.5)) if lags else "-",
                fmt_s(max(lags)) if lags else "-",
                f"{(len(times) - 1) / span:.2f}" if span else "-",
                busiest(server) if server else "-",
                busiest(server, 10.0) if server else "-",
            ]
        )
    print(
        f"   Staff notices (2 expected per request; {len(created)} requests created,"
        f" {db_requests} in the database); drained {drained_s:.1f} s after the load"
    )
    print(
        table(
            [
                "chat",
                "at load end",
                "all actions done",
                "drained",
                "dup",
                "lag p50 s",
                "lag max s",
                "rate/s",
                "busiest 1s",
                "busiest 10s",
            ],
            rows,
        )
    )
    refused: dict[str, int] = {}
    for send in sends:
        if not send["accepted"] and send["t"] >= load.started_wall:
            key = f"{send['chat_id']} ({role(send['chat_id'])})"
            refused[key] = refused.get(key, 0) + 1
    worst = sorted(refused.items(), key=lambda kv: -kv[1])[:6]
    print(
        f"   sandbox 429s since the load began: {sum(refused.values())}"
        f" ({', '.join(f'{k}: {v}' for k, v in worst) or 'none'})"
    )
    print(
        f"   sandbox: {stats['rejected_429']} 429s, {stats['sent_total']} accepted sends;"
        f" lag = notice arrival - Submit press; rate over the chat's notices; busiest windows"
        f" are all sends to that chat since the load began (the sandbox's clock)"
    )
    print()
    print("2. Disk (KiB: file + -wal)")
    disk_rows = []
    for name in DB_FILES:
        disk_rows.append(
            [
                name,
                *(
                    f"{kib(s[name][0])} + {kib(s[name][1])}"
                    for s in (sizes_start, sizes_load, sizes_idle)
                ),
            ]
        )
    total = [
        sum(sum(max(0, v) for v in s[n]) for n in DB_FILES)
        for s in (sizes_start, sizes_load, sizes_idle)
    ]
    disk_rows.append(["total", *(f"{t / 1024:.1f}" for t in total)])
    print(
        table(["file", "after start", "after load", f"after {args.idle_s:.0f} s idle"], disk_rows)
    )

    def rows_text(value: tuple[int, int] | str) -> str:
        return value if isinstance(value, str) else f"{value[0]} ({value[1]} visible)"

    print(
        table(
            ["kombu_message rows", "at load end", "drained", f"after {args.idle_s:.0f} s idle"],
            [
                [
                    "broker.sqlite3",
                    rows_text(rows_load),
                    rows_text(rows_drained),
                    rows_text(rows_idle),
                ]
            ],
        )
    )
    print(f"   indexes: {', '.join(indexes) or 'none'}")
    print(f"   poll plan: {plan}")
    print()
    base_s = f"{baseline.seconds:.0f} s before the load" if baseline else "none before the load"
    print(
        f"3. CPU (% of one core): idle {idle.seconds:.0f} s after the drain, {base_s};"
        f" load {load_span:.0f} s"
    )
    cpu_rows = []
    totals = [0.0, 0.0, 0.0]
    for name in ("up", *CHILD_NAMES):
        after = idle.cpu.get(name, 0.0)
        before = baseline.cpu.get(name, 0.0) if baseline else float("nan")
        busy = (cpu_after_load.get(name, 0) - cpu_before_load.get(name, 0)) / load_span
        totals = [totals[0] + after, totals[1] + before, totals[2] + busy]
        cpu_rows.append(
            [
                name,
                f"{after * 100:.2f}",
                f"{after * idle.seconds:.2f}",
                f"{before * 100:.2f}",
                f"{busy * 100:.1f}",
            ]
        )
    cpu_rows.append(
        [
            "total",
            f"{totals[0] * 100:.2f}",
            f"{totals[0] * idle.seconds:.2f}",
            f"{totals[1] * 100:.2f}",
            f"{totals[2] * 100:.1f}",
        ]
    )
    print(
        table(
            ["process", "idle after drain %", "its CPU s", "idle before load %", "load %"],
            cpu_rows,
        )
    )
    by_role: dict[str, int] = {}
    for x in idle_sends:
        by_role[role(x["chat_id"])] = by_role.get(role(x["chat_id"]), 0) + 1
    print(
        f"   during the idle minute the system still sent {len(idle_sends)} message(s)"
        f" ({', '.join(f'{k}: {v}' for k, v in sorted(by_role.items())) or 'none'});"
        f" outbox rows unsent at its start/end: {idle.unsent[0]}/{idle.unsent[1]}"
        + (f"; before the load: {baseline.unsent[0]}/{baseline.unsent[1]}" if baseline else "")
    )
    line_rows = [
        ["during the load and its drain", lines_load, actions_load],
        [f"during the idle {idle.seconds:.0f} s after the drain", len(idle.lines), 0],
    ]
    if baseline:
        line_rows.append(
            [f"during the idle {baseline.seconds:.0f} s before the load", len(baseline.lines), 0]
        )
    print(table(["lines printed by up", "lines", "user actions"], line_rows))
    print(f"   load lines by kind: {line_kinds(load_lines)}")
    if idle.lines:
        print(f"   idle lines by kind: {line_kinds(idle.lines)}")
    print()
    print("4. Restart on the same VAR_DIR")
    print(
        table(
            ["step", "result"],
            [
                ["Ctrl-C -> up exited (s)", f"{stop_s:.2f}"],
                ["children left after the stop", len(left_after_stop)],
                ["first start -> zavhoz is up (s)", f"{up_s:.2f}"],
                ["restart -> zavhoz is up (s)", f"{up2_s:.2f}"],
                [f"/my by {probe_id} answered, listing requests", "yes" if my_ok else "no"],
                ["  its latency (s)", fmt_s(my_after_s)],
                ["  its answer", f"{my_text[:50]} ({len(listed)} listed; {mine} created)"],
                ["second Ctrl-C -> exited (s)", f"{stop2_s:.2f}"],
            ],
            left=2,
        )
    )
    print()
    staff_done = min(
        len([n for n in created if n in w.arrived]) for w in watchers if w.chat_id in STAFF
    )
    print(
        "summary: "
        f"Submit p50/p95 {fmt_s(pct(sub_lat, 0.5) if sub_lat else None)}/"
        f"{fmt_s(pct(sub_lat, 0.95) if sub_lat else None)} s, "
        f"/my p50/p95 {fmt_s(pct(my_lat, 0.5) if my_lat else None)}/"
        f"{fmt_s(pct(my_lat, 0.95) if my_lat else None)} s "
        f"({len(sub_lat)}/{len(submits)} Submits, {len(my_lat)}/{len(mys)} /my ok); "
        f"notices {staff_done}/{len(created)} per staff chat; "
        f"broker rows {rows_text(rows_load)} -> {rows_text(rows_idle)} after idle; "
        f"idle CPU {totals[0] * 100:.2f}% of a core after the drain"
        f" ({len(idle_sends)} sends in it)"
        + (f", {totals[1] * 100:.2f}% before the load" if baseline else "")
        + f", {len(idle.lines)} idle lines; "
        f"Ctrl-C {stop_s:.1f} s, restart {up2_s:.1f} s, /my after restart "
        f"{'yes' if my_ok else 'no'} ({fmt_s(my_after_s)} s); whole run {total_s:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
