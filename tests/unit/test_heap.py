"""The start-up heap is frozen once set-up is done, in every kind of process that runs long."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import workers.app as worker_app
from core.heap import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # back to the oldest generation: the rest of the suite as before


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_freezes_what_is_alive_and_frees_the_garbage_first(unfrozen: None) -> None:
    kept = Node()
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    frozen = freeze_startup_heap()
    assert gone() is None  # collected, not frozen forever
    # (Not equal to get_freeze_count() now: another thread may free a frozen object meanwhile.)
    assert frozen > 0 and gc.get_freeze_count() > 0
    # What is frozen is skipped by full collections: the kept object is no longer tracked
    # by any generation the collector walks.
    assert not any(o is kept for o in gc.get_objects(generation=2))


def test_workers_freeze_before_the_fork_in_each_child_and_when_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(worker_app, "freeze_startup_heap", lambda: calls.append("freeze"))
    monkeypatch.setattr("db.session.dispose_engine", lambda: calls.append("dispose"))
    monkeypatch.setattr("workers.telegram.warm_up", lambda: calls.append("warm_up"))
    monkeypatch.setattr("core.readiness.mark_ready", lambda who: calls.append(f"ready {who}"))
    hooks: list[Any] = [
        worker_app._freeze_before_fork,
        worker_app._after_fork,
        worker_app._worker_ready,
        worker_app._beat_ready,
    ]
    for hook in hooks:
        hook()
    assert calls == [
        "freeze",
        "dispose",
        "warm_up",
        "freeze",  # after the child's own set-up
        "freeze",
        "ready worker",
        "freeze",
        "ready beat",
    ]
