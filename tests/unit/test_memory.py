"""Batch tasks give malloc's freed pages back (workers/memory.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref

import pytest

from workers import memory

# A heap left fragmented: 1 KB blocks (malloc's, not Python's small-object arenas) freed but
# for one in 64, so glibc cannot shrink the heap from its top and keeps the holes.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from workers import memory

    def rss_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    blocks = [bytes(1024) for _ in range(200_000)]
    kept = blocks[::64]
    del blocks
    before = rss_mb()
    gave = memory.give_back() if sys.argv[1] == "trim" else False
    print(gave, before, rss_mb(), len(kept))
    """
)


def _run(mode: str) -> tuple[bool, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", float(out[1]), float(out[2])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_give_back_returns_freed_heap_pages() -> None:
    gave, before, after = _run("trim")
    assert gave
    assert before - after > 100  # of ~200 MB freed inside the heap
    _, before, after = _run("keep")
    assert before - after < 20  # without it glibc keeps them


class _Node:
    peer: _Node | None = None


def test_give_back_frees_reference_cycles_first() -> None:
    """A matplotlib figure is such a cycle: without a collection its memory waits for the
    collector's oldest generation, every few reports."""
    gc.disable()  # no automatic collection may free it meanwhile
    try:
        node = _Node()
        node.peer = node
        ref = weakref.ref(node)
        del node
        assert ref() is not None
        memory.give_back()
        assert ref() is None
    finally:
        gc.enable()


def test_after_task_trims_for_batch_queues_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def give_back() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(memory, "give_back", give_back)
    for name in ("commands.start", "notifications.deliver", "no_prefix", "unknown.task"):
        memory.after_task(name)
    assert calls == []
    for name in ("reports.daily", "privacy.export", "maintenance.orphans"):
        memory.after_task(name)
    assert len(calls) == 3
