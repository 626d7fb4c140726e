"""A long-running process's heap: what its imports and set-up made is frozen, so that the
garbage collector's full passes no longer walk it.

A full collection visits every tracked object. A worker's imports alone are ~270,000 of them
(~180 ms a pass on this machine kind), and a command that allocates much, a notice to 300
staff, set one off every other command: 200 ms pauses in the middle of commands
(bench/gc_pauses.py). Frozen objects (gc.freeze) sit in a permanent generation the collector
skips; what the process allocates afterwards is collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what set-up left as garbage (frozen it would never be freed), then freeze the
    rest; returns how many objects are frozen. Call when set-up is done: in a prefork worker
    once before the pool forks (the children share the frozen pages untouched) and again in
    each child after its own set-up."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
