"""A pool child's SIGTERM (workers/child_shutdown.py), in a process of its own: idle, it dies at
once; mid-task, the task runs to its end and the process goes shortly after."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from workers import child_shutdown

    child_shutdown.install()
    if sys.argv[1] == "busy":
        child_shutdown.task_started()
    os.kill(os.getpid(), signal.SIGTERM)  # as a SIGTERM to the whole process group
    time.sleep(0.3)  # the task goes on
    print("task done", flush=True)
    child_shutdown.task_finished()
    time.sleep(5)
    print("still here", flush=True)
    """
)


def run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=30
    )


def test_an_idle_child_dies_at_once() -> None:
    done = run("idle")
    assert done.returncode == -signal.SIGTERM
    assert done.stdout == ""


def test_a_busy_child_finishes_its_task_then_goes() -> None:
    done = run("busy")
    assert done.stdout == "task done\n", done.stderr  # finished, and gone well before 5 s
    assert done.returncode == -signal.SIGTERM
