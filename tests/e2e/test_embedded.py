"""README's first command: the whole system on embedded defaults, talked to with the chat."""

from __future__ import annotations

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
        up.wait_for_log("bot.polling", timeout=60)
        up.wait_for_log("ready.", timeout=60)  # the worker
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
            input="/start\n!3\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Hello, Ann!" in chat.stdout, chat.stdout + chat.stderr + up.log()[-3000:]
        assert "[3] ❓ Help" in chat.stdout
        assert "What I can do" in chat.stdout  # pressing the menu button
        assert (tmp_path / "var" / "zavhoz.sqlite3").exists()
        assert (tmp_path / "var" / "broker.sqlite3").exists()
    finally:
        started = time.monotonic()
        procs.stop_all()
    assert time.monotonic() - started < 25  # Ctrl-C stops the whole system promptly
