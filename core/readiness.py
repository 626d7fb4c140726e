"""Telling `zavhoz up` that a process is ready: a file per process in ZAVHOZ_READY_DIR.

`up` prints its banner only once the bot polls, the worker consumes and beat ticks, so a
newcomer's first message is answered (before, the banner came seconds too early).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "ZAVHOZ_READY_DIR"


def mark_ready(name: str) -> None:
    directory = os.environ.get(ENV)
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / name).touch()
