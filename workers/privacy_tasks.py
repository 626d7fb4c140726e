"""Privacy (queue `privacy`): the steps of an erasure after its identity was unlinked.

/export and /forget_me themselves are commands (workers.commands routes `privacy.*` here);
`privacy.scrub` finishes what /forget_me or `zavhoz privacy erase` started, in steps
(workers.privacy.erasure.scrub_step), each committed on its own.
"""

from __future__ import annotations

import time

from celery import Task

from core.logging import get_logger
from db.session import session_scope
from workers import failures, outbox
from workers.app import app, send_signatures
from workers.privacy import erasure
from workers.redelivery import CappedTask

log = get_logger(__name__)

# Steps are started until this much time is spent, well inside the task's soft time limit;
# then the task hands the rest to a task of its own (progress is in the database).
SCRUB_BUDGET_S = 10.0


def scrub_until_done(audit_id: int, budget_s: float | None) -> bool:
    """Steps of erasure `audit_id` until it is finished (True) or the budget is spent."""
    deadline = None if budget_s is None else time.monotonic() + budget_s
    while deadline is None or time.monotonic() < deadline:
        with session_scope() as session:
            step = erasure.scrub_step(session, audit_id)
        if step.done:
            outbox.deliver(step.deliver)
            return True
    return False


@app.task(name=erasure.SCRUB_TASK, base=CappedTask, bind=True, max_retries=None)
def scrub(self: Task, audit_id: int) -> bool:  # type: ignore[type-arg]
    """Erasure `audit_id`, scrubbed to the end (a task after another if it is long)."""
    try:
        done = scrub_until_done(audit_id, SCRUB_BUDGET_S)
    except Exception as error:
        # An outage or a deadlock: what was committed stays done, the rest is tried again.
        # Anything else leaves the erasure unfinished: the relay resumes it (`stalled`).
        if failures.is_outage(error):
            delay = failures.retry_delay(self.request.retries)
            log.warning("privacy.scrub_retry", retry_in_s=delay, error=failures.kind_of(error))
            raise self.retry(countdown=delay, exc=error) from error
        raise
    if not done:
        send_signatures([erasure.scrub_signature(audit_id)])
    return done
