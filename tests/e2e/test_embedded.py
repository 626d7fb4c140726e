"""README's first command: the whole system on embedded defaults, talked to with the chat."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.processes import Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_runs_everything_without_token_redis_or_postgres(tmp_path: Path) -> None:
    port = free_port()
    procs = Processes(tmp_path, {})  # no DATABASE_URL, REDIS_URL, BOT_TOKEN: embedded
    try:
        up = procs.start("up", "up", "--sandbox-port", str(port))
        up.wait_for_log("zavhoz is up", timeout=90)
        log = up.log()
        # Printed once everything is ready: the bot polls and the worker consumes.
        assert log.index("bot.polling") < log.index("zavhoz is up")
        assert log.index("ready.") < log.index("zavhoz is up")
        chat = subprocess.run(
            [
                sys.executable,
                "-m",
                "zavhoz",
                "chat",
                "--as",
                "1001",
                "--name",
                "Ann",
                "--url",
                f"http://127.0.0.1:{port}",
            ],
            input="/start\n!4\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Hello, Ann!" in chat.stdout, chat.stdout + chat.stderr + up.log()[-3000:]
        # The demo has an admin to grant roles: make chat's user, as the banner says.
        assert "an admin" in chat.stdout
        assert "User 1001 is an admin" in up.log()
        assert "[4] ❓ Help" in chat.stdout  # an admin's menu: New, My, Queue, Help
        assert "What I can do" in chat.stdout  # pressing the menu button
        # One line per user action in the one terminal; the per-task chatter and banners not.
        quiet = up.log()
        assert quiet.count('"command.applied"') >= 1
        for chatter in ("] received", "succeeded in", "is handled", "[tasks]", "SecurityWarning"):
            assert chatter not in quiet, chatter
        assert (tmp_path / "var" / "zavhoz.sqlite3").exists()
        assert (tmp_path / "var" / "broker.sqlite3").exists()
    finally:
        started = time.monotonic()
        procs.stop_all()
    assert time.monotonic() - started < 25  # Ctrl-C stops the whole system promptly


def test_up_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "zavhoz", "up", "--sandbox-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "VAR_DIR": str(tmp_path / "var")},
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"zavhoz: port {port} is busy (another zavhoz up?); choose another with:"
        " zavhoz up --sandbox-port PORT"
    ]
    assert "Traceback" not in done.stdout + done.stderr


def _children(pid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in text:
            found.add(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def test_ctrl_c_while_starting_stops_everything_it_started(tmp_path: Path) -> None:
    procs = Processes(tmp_path, {})
    try:
        up = procs.start("up", "up", "--sandbox-port", str(free_port()))
        children: set[int] = set()
        deadline = time.monotonic() + 60
        while len(children) < 4 and time.monotonic() < deadline:  # sandbox, worker, beat, bot
            children |= _children(up.popen.pid)
            time.sleep(0.05)
        assert len(children) == 4, children
        assert "zavhoz is up" not in up.log()  # still starting: they import for seconds
        os.kill(up.popen.pid, signal.SIGINT)  # what the terminal's Ctrl-C sends it
        assert up.popen.wait(timeout=60) == 130
        assert not [pid for pid in children if _alive(pid)], up.log()[-3000:]
        assert "Traceback" not in up.log()
    finally:
        procs.stop_all()
