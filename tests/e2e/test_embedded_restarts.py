"""`make run` restarted around a Submit, as operators do: Ctrl-C, or the whole machine killed
(SIGKILL to every process) at several points. The request is created once: never lost, never
twice, and its creator is told once."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.test_embedded import free_port
from tests.support.chat import Chat
from tests.support.processes import Proc, Processes
from tests.support.sandbox_api import SandboxAPI

CREATED = re.compile(r"Request #(\d+) created\.")
RESIDENT = 1003


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_machine(up: Proc) -> None:
    """Every process of `zavhoz up` at once (its children run in sessions of their own)."""
    for child in children(up.popen.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)
    up.kill()


def ctrl_c(up: Proc) -> None:
    os.killpg(up.popen.pid, signal.SIGINT)  # what a terminal sends its foreground group
    up.popen.wait(timeout=40)


def start(procs: Processes, name: str, port: int) -> Proc:
    up = procs.start(name, "up", "--sandbox-port", str(port))
    up.wait_for_log("zavhoz is up", timeout=90)
    return up


def fill_in(chat: Chat, title: str) -> dict[str, object]:
    chat.say("/new")
    chat.wait("What is the problem?")
    chat.say(title)
    chat.wait("Describe the problem")
    chat.say("It flickers")
    chat.wait("Where is it?")
    chat.say("Room 101")
    chat.press(chat.wait("How urgent"), "Normal")
    chat.press(chat.wait("Add photos"), "Skip")
    return chat.wait("Check your request")


@pytest.mark.timeout(300)  # a killed worker's command returns after the 60 s visibility timeout
@pytest.mark.parametrize(
    ("stop", "after_s"),
    [(kill_machine, 0.05), (kill_machine, 0.4), (ctrl_c, 0.3)],
    ids=["killed-50ms", "killed-400ms", "ctrl-c-300ms"],
)
def test_a_submit_survives_a_restart(tmp_path: Path, stop: object, after_s: float) -> None:
    port = free_port()
    procs = Processes(tmp_path, {})
    try:
        up = start(procs, "up", port)
        chat = Chat(SandboxAPI(f"http://127.0.0.1:{port}"), RESIDENT)
        chat.say("/start")
        chat.wait("Hello")
        title = f"Lamp {after_s}"
        summary = fill_in(chat, title)
        chat.press(summary, "Submit")
        time.sleep(after_s)
        stop(up)  # type: ignore[operator]
        start(procs, "up-again", port)
        # A command fetched by a killed worker comes back after the broker's visibility
        # timeout (60 s); a Submit still at the sandbox is fetched again at once.
        chat.wait(lambda m: CREATED.search(m.get("text") or "") is not None, timeout=120)
        time.sleep(3)  # a second creation would show by now
        texts = [m.get("text") or "" for m in chat.api.messages(RESIDENT)]
        assert sum(1 for t in texts if CREATED.search(t)) == 1, texts
        with sqlite3.connect(tmp_path / "var" / "zavhoz.sqlite3") as db:
            made = db.execute("SELECT count(*) FROM requests WHERE title = ?", (title,)).fetchone()
    finally:
        procs.stop_all()
    assert made == (1,)
