"""What a command leaves for after commit, run in the test's own thread (no broker, no worker):
notices are delivered at once, as `notifications.deliver` would, an erasure's steps run to the
end as `privacy.scrub` would; delayed retries are recorded."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from celery import Signature


class FollowUps:
    def __init__(self) -> None:
        self.retries: list[dict[int, object]] = []  # {row id: when}, one per scheduled retry

    def __call__(self, signatures: Iterable[Signature | None]) -> None:
        from workers import outbox, privacy_tasks
        from workers.privacy import erasure

        for sig in signatures:
            if sig is not None and sig.task == erasure.SCRUB_TASK:
                privacy_tasks.scrub_until_done(sig.args[0], budget_s=None)
                continue
            if sig is None or sig.task != outbox.DELIVER_TASK:
                continue  # e.g. a broadcast's drains: the tests that want them run a worker
            ids = list(sig.args[0])
            if sig.options.get("eta") is not None:
                self.retries.append(dict.fromkeys(ids, sig.options["eta"]))
            else:
                outbox.deliver(ids)


def run_follow_ups_inline(monkeypatch: pytest.MonkeyPatch) -> FollowUps:
    follow_ups = FollowUps()
    monkeypatch.setattr("workers.command_tasks.send_signatures", follow_ups)
    return follow_ups
