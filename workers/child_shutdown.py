"""A prefork pool child that gets SIGTERM in the middle of a task finishes the task first.

SIGTERM sent to a whole process group (platforms that stop a container or dyno so, systemd's
default KillMode=control-group, `kill -TERM -<pgid>`) reaches the pool's children together with
the main process, and Celery resets their SIGTERM to the default: they died on the spot while
the main process began its warm shutdown. A reply Telegram had taken but the outbox had not yet
recorded went out again when its lease ran out; a row claimed for sending waited out its lease
(a broadcast's last progress edit minutes late): both seen in tests/e2e/test_rolling_restart.py.

The main process's warm shutdown is the one that stops children, once their tasks are done. So
here a child that is idle dies as before, and a busy one notes the signal, lets the task run to
its end (its time limits still hold: the main process sends SIGKILL past the hard one), and
goes shortly after, once the task's result has reached the main process, which matters when
the signal was meant for this child alone (a cold shutdown's terminate).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

from workers.timing import HARD_TIME_LIMIT_S

# After the task: time for its result to reach the main process before this child goes.
_AFTER_TASK_S = 0.5

_child = False  # this process is a prefork pool child
_busy = False
_asked = False
_leaving = False
_previous: Any = signal.SIG_DFL  # billiard's own handler: how a child goes


def install() -> None:
    """In a pool child at its start (worker_process_init). The handler itself is set before the
    first task: billiard sets its own SIGTERM handler after Celery's initializer has run."""
    global _child, _busy, _asked, _leaving
    _child, _busy, _asked, _leaving = True, False, False, False


def task_started() -> None:
    global _busy, _previous
    _busy = True
    if _child and signal.getsignal(signal.SIGTERM) is not _on_term:
        _previous = signal.signal(signal.SIGTERM, _on_term)


def task_finished() -> None:
    global _busy
    _busy = False
    if _asked:
        _leave_in(_AFTER_TASK_S)


def _on_term(signum: int, frame: FrameType | None) -> None:
    global _asked
    if not _busy or _leaving:
        _go(signum, frame)
    elif not _asked:
        _asked = True
        _leave_in(HARD_TIME_LIMIT_S)  # a task that never ends does not keep the child


def _go(signum: int, frame: FrameType | None) -> None:
    """As without this module: billiard's handler (it exits through finally blocks), or the
    default (killed by the signal)."""
    signal.signal(signal.SIGTERM, _previous)
    if callable(_previous):
        _previous(signum, frame)
    os.kill(os.getpid(), signal.SIGTERM)


def _leave_in(delay: float) -> None:
    def leave() -> None:
        global _leaving
        _leaving = True
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, above

    timer = threading.Timer(delay, leave)
    timer.daemon = True
    timer.start()
