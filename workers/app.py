"""The Celery app: queues, routing and the reliability settings of docs/design.md."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable
from typing import Any

from celery import Celery, Signature, signals
from kombu import Queue

from core.heap import freeze_startup_heap
from core.logging import QUIET_ENV, configure_logging, get_logger
from core.queues import ALL_QUEUES, INTERACTIVE, queue_for
from core.schedules import CRON_FIELDS, Cron, Interval
from core.settings import Settings, get_settings
from workers import child_shutdown, memory
from workers.timing import HARD_TIME_LIMIT_S, SOFT_TIME_LIMIT_S, VISIBILITY_TIMEOUT_S

log = get_logger(__name__)

TASK_MODULES = (
    "workers.command_tasks",
    "workers.notification_tasks",
    "workers.maintenance_tasks",
    "workers.report_tasks",
    "workers.privacy_tasks",
)

# Scheduled jobs: the setting SCHEDULE_<JOB> says when (see core.schedules) -> the task.
SCHEDULED_JOBS: dict[str, str] = {
    "relay": "maintenance.relay_outbox",
    "report_daily": "reports.daily",
    "report_weekly": "reports.weekly",
    "retention": "maintenance.retention",
    "escalate": "maintenance.escalate",
    "consistency": "maintenance.consistency",
    "orphans": "maintenance.orphans",
}
# A cron job's message is dropped if no worker took it within this long: beat or the workers
# down for a day must not flood admins with yesterday's reports when they come back.
CRON_EXPIRY_S = 3600.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    from celery.schedules import crontab

    entries: dict[str, dict[str, Any]] = {}
    for job, task in SCHEDULED_JOBS.items():
        when = settings.schedule(job)
        if isinstance(when, Interval):
            # An interval job's run is stale once the next one is due.
            entries[job] = {
                "task": task,
                "schedule": when.seconds,
                "options": {"expires": when.seconds},
            }
        elif isinstance(when, Cron):
            fields = {name: getattr(when, name) for name in CRON_FIELDS}
            entries[job] = {
                "task": task,
                "schedule": crontab(**fields),
                "options": {"expires": CRON_EXPIRY_S},
            }
    return entries


def route(name: str, *_: Any, **__: Any) -> dict[str, str] | None:
    """Our tasks by name prefix; anything else (Celery's own, benchmarks) keeps its options."""
    try:
        return {"queue": queue_for(name)}
    except ValueError:
        return None


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.embedded:
        return {}  # the embedded transport hands its options to create_engine
    if settings.amqp:
        # RabbitMQ: a publish returns once the broker has the message (publisher confirms).
        # No visibility timeout: a message comes back when its consumer's connection drops.
        return {"confirm_publish": True}
    return {
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        # Look for expired unacknowledged messages every 10 s (kombu's default scans every
        # 10th period, ~100 s): a dead host's command comes back ~60-70 s after its fetch.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
        # Bounded waits on a Redis that stopped answering, then the connection is retried.
        "socket_connect_timeout": 5,
        "socket_timeout": 15,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }


def create_app(settings: Settings) -> Celery:
    # Task arguments hold user text: message headers and task events carry a redacted summary.
    app = Celery("zavhoz", include=list(TASK_MODULES), amqp="core.observability:RedactingAMQP")
    transport_options = _transport_options(settings)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=INTERACTIVE,
        # Durable queues and persistent messages on RabbitMQ (kombu's defaults, said here).
        task_queues=[Queue(name, durable=True) for name in ALL_QUEUES],
        task_default_delivery_mode="persistent",
        # RabbitMQ redelivers the unacked messages of a lost connection at once: the tasks
        # still running on them stop rather than run twice at the same time.
        worker_cancel_long_running_tasks_on_connection_loss=settings.amqp,
        task_routes=(route,),
        # acks_late with prefetch 1: a busy worker does not hoard messages others could run.
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        task_soft_time_limit=SOFT_TIME_LIMIT_S,
        task_time_limit=HARD_TIME_LIMIT_S,
        worker_send_task_events=True,
        task_send_sent_event=True,
        beat_schedule=beat_schedule(settings),
        timezone=settings.timezone,
        enable_utc=True,
    )
    if settings.redis_url:
        # Two beats may run (HA): redbeat's Redis lock makes each tick fire once. The lock
        # outlives a dead beat by redbeat_lock_timeout, so keep it short for quick failover.
        app.conf.update(
            beat_scheduler="workers.beat:ResilientRedBeatScheduler",
            redbeat_redis_url=settings.redis_url,
            redbeat_redis_options={
                "socket_connect_timeout": 3,
                "socket_timeout": 5,
                "health_check_interval": 10,
            },
            redbeat_key_prefix="zavhoz:redbeat:",
            beat_max_loop_interval=5,
            redbeat_lock_timeout=30,
        )
    else:
        app.conf.beat_schedule_filename = str(settings.var_dir / "beat-schedule")
    return app


app = create_app(get_settings())

if os.environ.get(QUIET_ENV) == "1":
    # The demo's one terminal: Celery's warning about running as root says nothing to a
    # newcomer trying `make run` in a container (production workers still print it).
    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", category=SecurityWarning)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)


@signals.celeryd_init.connect
@signals.beat_init.connect
def _init_sentry(**_: Any) -> None:
    from sentry_sdk.integrations.celery import CeleryIntegration

    from core.observability import init_sentry

    init_sentry(get_settings(), [CeleryIntegration(monitor_beat_tasks=True)])


@signals.celeryd_after_setup.connect
def _serve_metrics(instance: Any, **_: Any) -> None:
    """Before the pool forks: its children then write into this process's metrics directory."""
    from core.metrics import setup
    from workers.backlog import BacklogCollector

    queues = instance.app.amqp.queues
    consumed = sorted(queues.consume_from or queues)
    setup(get_settings(), "worker", [BacklogCollector(consumes=consumed)])


@signals.beat_init.connect
def _serve_beat_metrics(**_: Any) -> None:
    from core.metrics import setup
    from workers.backlog import BacklogCollector

    setup(get_settings(), "beat", [BacklogCollector()])


@signals.celeryd_after_setup.connect
def _warm_reports(instance: Any, **_: Any) -> None:
    """A worker that builds reports imports matplotlib before its pool forks (~1 s here):
    otherwise the first report after each start pays for it (bench/reports.py)."""
    from core.queues import REPORTS

    queues = instance.app.amqp.queues
    if REPORTS in (queues.consume_from or queues):
        import matplotlib.backends.backend_agg
        import matplotlib.figure  # noqa: F401


@signals.worker_ready.connect
def _worker_ready(**_: Any) -> None:
    from core.readiness import mark_ready

    freeze_startup_heap()  # a threads or solo pool: its tasks run in this process
    mark_ready("worker")


@signals.beat_init.connect
def _beat_ready(**_: Any) -> None:
    from core.readiness import mark_ready

    freeze_startup_heap()
    mark_ready("beat")


@signals.celeryd_after_setup.connect
def _freeze_before_fork(**_: Any) -> None:
    """After the imports and set-up above, before the pool forks (signals run in the order
    they were connected)."""
    freeze_startup_heap()


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    from db.session import dispose_engine
    from workers.telegram import warm_up

    child_shutdown.install()  # a task under way finishes before a SIGTERM takes the child
    dispose_engine()
    warm_up()
    freeze_startup_heap()


@signals.worker_process_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    from workers.telegram import close_clients

    close_clients()


_started: dict[str, float] = {}  # task id -> when it started, for the duration histogram


@signals.task_prerun.connect
def _bind_task_context(task_id: str, task: Any, **_: Any) -> None:
    import structlog

    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task.name)
    _started[task_id] = time.perf_counter()
    child_shutdown.task_started()


@signals.task_postrun.connect
def _unbind_task_context(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    import structlog

    from core.metrics import metrics

    child_shutdown.task_finished()
    memory.after_task(task.name)
    structlog.contextvars.clear_contextvars()
    started = _started.pop(task_id, None)
    m = metrics()
    m.tasks.labels(task.name, (state or "unknown").lower()).inc()
    if started is not None:
        m.task_seconds.labels(task.name).observe(time.perf_counter() - started)


def send_signatures(signatures: Iterable[Signature | None]) -> None:
    """The task layer's one way to start follow-up work that services describe as signatures
    (by task name: services never import task modules)."""
    for sig in signatures:
        if sig is not None:
            app.send_task(str(sig.task), args=sig.args, kwargs=sig.kwargs, **sig.options)
