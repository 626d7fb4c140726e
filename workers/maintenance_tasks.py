"""Maintenance (queue `maintenance`): the task layer over the services' upkeep functions."""

from __future__ import annotations

from db.session import session_scope
from workers import outbox
from workers.app import app, send_signatures
from workers.broadcasts import engine
from workers.privacy import erasure
from workers.redelivery import CappedTask
from workers.upkeep import consistency, consistency_notice, escalation, orphans, retention
from workers.upkeep.jobs import run_job

RELAY_BATCH = 500
# Well inside the task's soft time limit: what is left is sent by the next run.
RELAY_BUDGET_S = 15.0


@app.task(name="maintenance.relay_outbox", base=CappedTask)
def relay_outbox() -> dict[str, int]:
    """Send rows left pending (a worker died between commit and send, or a retry is due),
    restart broadcasts whose drains stopped, and resume erasures whose steps stopped. Rows,
    broadcasts and erasures are claimed with SKIP LOCKED; a second run while one is going exits
    at once."""
    return run_job("maintenance.relay_outbox", _relay)


def _relay() -> dict[str, int]:
    with session_scope() as session:
        released = outbox.release_expired_leases(session)
        ids = outbox.due_ids(session, limit=RELAY_BATCH)
        restart = engine.claim_stalled(session)
        resume = erasure.stalled(session)
    send_signatures(engine.fan_out_signature(b) for b in restart)
    send_signatures(erasure.scrub_signature(audit_id) for audit_id in resume)
    counts = outbox.deliver(ids, budget_s=RELAY_BUDGET_S).counts
    if restart:
        counts["broadcasts_restarted"] = len(restart)
    if released:
        counts["leases_released"] = released
    if resume:
        counts["erasures_resumed"] = len(resume)
    return counts


# Within the task's soft time limit: what is left is deleted by the next run.
RETENTION_BUDGET_S = 20.0


@app.task(name="maintenance.retention", base=CappedTask)
def prune_retained() -> dict[str, int]:
    """Delete idempotency keys, finished outbox rows and generated files past their retention
    (RETENTION_IDEMPOTENCY, RETENTION_OUTBOX), in batches."""
    return run_job("maintenance.retention", lambda: retention.prune(budget_s=RETENTION_BUDGET_S))


ESCALATE_BUDGET_S = 20.0


@app.task(name="maintenance.escalate", base=CappedTask)
def escalate() -> dict[str, int]:
    """Open requests past their SLA: escalated once per breach, their people told."""
    return run_job("maintenance.escalate", _escalate)


def _escalate() -> dict[str, int]:
    escalated, notices = escalation.escalate(budget_s=ESCALATE_BUDGET_S)
    send_signatures([outbox.deliver_signature(notices)])
    return {"escalated": escalated} if escalated else {}


@app.task(name="maintenance.consistency", base=CappedTask)
def check_consistency() -> dict[str, int]:
    """Check the invariants (nothing is changed: repairs are a person's call, with
    `zavhoz maintenance consistency --repair`), of what changed since the last check and once a
    week of everything; tell the admins only when something is wrong."""
    return run_job("maintenance.consistency", _consistency)


def _consistency() -> dict[str, int]:
    report = consistency.check(since=consistency.last_cursor())
    consistency.remember(report)
    if report.totals:
        send_signatures([outbox.deliver_signature(consistency_notice.tell_admins(report))])
    return dict(report.totals)


ORPHANS_BUDGET_S = 20.0


@app.task(name="maintenance.orphans", base=CappedTask)
def remove_orphans() -> dict[str, int]:
    """Rows and dialog keys whose owner is gone: backed up under VAR_DIR/backups, then deleted
    in batches (`zavhoz maintenance restore FILE` puts them back)."""
    return run_job("maintenance.orphans", _orphans)


def _orphans() -> dict[str, int]:
    _, found = orphans.apply(budget_s=ORPHANS_BUDGET_S)
    return {item.kind: item.count for item in found}
