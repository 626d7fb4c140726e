"""A pool child's SIGTERM (workers/child_shutdown.py), in a process of its own: idle, it goes
at once the way it would have; mid-task, the task runs to its end and the process goes shortly
after."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from workers import child_shutdown

    # billiard's own handler in a pool child: leaves through SystemExit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
    child_shutdown.install()
    child_shutdown.task_started()  # the first task sets the handler
    child_shutdown.task_finished()
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


def test_an_idle_child_goes_at_once_through_its_own_handler() -> None:
    done = run("idle")
    assert (done.returncode, done.stdout) == (7, ""), done.stderr


def test_a_busy_child_finishes_its_task_then_goes() -> None:
    done = run("busy")
    assert (done.returncode, done.stdout) == (7, "task done\n"), done.stderr  # well before 5 s
