"""Reports (queue `reports`): the scheduled digests to every admin and the on-demand report
an admin asked for with /report. The work is in `workers.reports.service`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task

from core.domain import ReportKind
from core.logging import get_logger
from workers import failures, outbox
from workers.app import app, send_signatures
from workers.redelivery import CappedTask
from workers.reports import service
from workers.reports.service import Recipient
from workers.upkeep.jobs import run_job

log = get_logger(__name__)

# An outage (database, Redis) is waited out for about this long (capped backoff), then the
# report is given up with an error: by then a scheduled one is stale anyway (see CRON_EXPIRY_S).
REPORT_RETRIES = 100


def _send(
    task: Task,  # type: ignore[type-arg]
    kind: ReportKind,
    recipients: Callable[[], list[Recipient]],
    key: str | None,
) -> dict[str, int]:
    try:
        ids, after = service.send_report(kind, recipients(), key=key)
    except Exception as error:
        if failures.is_outage(error) and task.request.retries < REPORT_RETRIES:
            delay = failures.retry_delay(task.request.retries)
            log.warning("report.retry", retry_in_s=delay, error=failures.kind_of(error))
            raise task.retry(countdown=delay, exc=error) from error
        raise
    # Sent by this task in order: summary, chart, CSV to each admin; the first upload of a file
    # gives the file_id the next admins get.
    report = outbox.deliver(ids)
    send_signatures([outbox.retry_signature(report), *after])
    return report.counts


@app.task(name="reports.daily", base=CappedTask, bind=True, max_retries=None)
def daily(self: Task) -> dict[str, int]:  # type: ignore[type-arg]
    """Yesterday's report to every admin, once per day whatever runs it twice."""
    return run_job("reports.daily", lambda: _send(self, ReportKind.DAILY, service.admins, None))


@app.task(name="reports.weekly", base=CappedTask, bind=True, max_retries=None)
def weekly(self: Task) -> dict[str, int]:  # type: ignore[type-arg]
    """Last week's (Monday to Sunday) report to every admin, once per week."""
    return run_job("reports.weekly", lambda: _send(self, ReportKind.WEEKLY, service.admins, None))


@app.task(name="reports.on_demand", base=CappedTask, bind=True, max_retries=None)
def on_demand(
    self: Task,  # type: ignore[type-arg]
    kind: str,
    chat_id: int,
    user_id: int,
    lang: str,
    key: str,
) -> dict[str, Any]:
    """The report an admin asked for (the command checked the role); `key` is the command's."""
    return _send(self, ReportKind(kind), lambda: [Recipient(chat_id, user_id, lang)], key)
