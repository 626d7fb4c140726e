"""What is waiting: queue depths and ages from the broker, the outbox, dead letters and the
scheduled jobs' last runs from the database. `zavhoz status` shows it; `BacklogCollector`
exports it as gauges at each scrape of a worker's or beat's metrics (core/metrics.py).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import as_utc
from core.logging import get_logger
from core.observability import SENT_AT_HEADER
from core.queues import ALL_QUEUES
from core.settings import get_settings
from core.states import OutboxState
from db.models import DeadLetter, JobRun, Outbox
from db.session import session_scope

log = get_logger(__name__)

_PRIORITY_SEP = "\x06\x16"  # kombu's Redis priority queues: "<queue>\x06\x16<priority>"


def queue_backlog() -> dict[str, tuple[int, float | None]]:
    """Each queue's depth and when its oldest message was sent (epoch seconds, if known)."""
    settings = get_settings()
    if settings.embedded:
        return _embedded_queues()
    if settings.amqp:
        return _amqp_queues(settings.broker_url)
    return _redis_queues(settings.broker_url)


def _sent_at(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _redis_queues(url: str) -> dict[str, tuple[int, float | None]]:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        found: dict[str, tuple[int, float | None]] = {}
        for queue in ALL_QUEUES:
            keys = [queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in (3, 6, 9))]
            depth = sum(int(client.llen(k)) for k in keys)
            # kombu pushes on the left and pops on the right: the oldest is the last element.
            oldest = [s for k in keys if (s := _sent_at(client.lindex(k, -1))) is not None]
            found[queue] = (depth, min(oldest) if oldest else None)
        return found
    finally:
        client.close()


def _amqp_queues(url: str) -> dict[str, tuple[int, float | None]]:
    """Depths by a passive declare. RabbitMQ cannot show a message without taking it, so the
    oldest message's age is not known here (the outbox's oldest pending row still is)."""
    from kombu import Connection

    found: dict[str, tuple[int, float | None]] = {}
    with Connection(url, connect_timeout=3) as conn:
        for queue in ALL_QUEUES:
            channel: Any = conn.channel()
            try:
                _, depth, _ = channel.queue_declare(queue=queue, passive=True)
            except conn.channel_errors:  # never declared: no worker has started on it yet
                depth = 0
            finally:
                with contextlib.suppress(*conn.channel_errors, *conn.connection_errors):
                    channel.close()
            found[queue] = (int(depth), None)
    return found


def _embedded_queues() -> dict[str, tuple[int, float | None]]:
    path = get_settings().var_dir / "broker.sqlite3"
    found: dict[str, tuple[int, float | None]] = dict.fromkeys(ALL_QUEUES, (0, None))
    if not path.exists():
        return found
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT q.name, COUNT(*), MIN(m.id) FROM kombu_message m"
            " JOIN kombu_queue q ON q.id = m.queue_id WHERE m.visible GROUP BY q.name"
        ).fetchall()
        for name, depth, first in rows:
            if name not in found:
                continue
            payload = conn.execute("SELECT payload FROM kombu_message WHERE id = ?", (first,))
            found[name] = (int(depth), _sent_at(payload.fetchone()[0]))
    except sqlite3.OperationalError:
        pass  # no message was ever sent: kombu has not made its tables yet
    finally:
        conn.close()
    return found


def outbox_states(session: Session) -> tuple[dict[str, int], datetime | None]:
    """Outbox rows by state, and when the oldest pending one was made."""
    states = dict(session.execute(select(Outbox.state, func.count()).group_by(Outbox.state)).all())
    first = session.scalar(
        select(func.min(Outbox.created_at)).where(Outbox.state == OutboxState.PENDING)
    )
    return {s.value: int(states.get(s.value, 0)) for s in OutboxState}, first


def letters_waiting(session: Session) -> int:
    query = select(func.count()).select_from(DeadLetter).where(DeadLetter.replayed_at.is_(None))
    return int(session.scalar(query) or 0)


class BacklogCollector(Collector):
    """Gauges read at scrape time (a few LLENs and three small queries), so every worker and
    beat exports the same picture; alerts take the max over them. `consumes`: the queues this
    process's worker takes from (none for beat), for the "no worker on a queue" alert."""

    def __init__(self, consumes: Iterable[str] = ()) -> None:
        self.consumes = tuple(consumes)

    def collect(self) -> Iterator[Metric]:
        consumes = GaugeMetricFamily(
            "zavhoz_worker_consumes", "1 for each queue this worker consumes", labels=["queue"]
        )
        for queue in self.consumes:
            consumes.add_metric([queue], 1)
        yield consumes
        up = GaugeMetricFamily(
            "zavhoz_backlog_up", "1 when the broker and database answered this scrape"
        )
        try:
            found = list(self._backlog(time.time()))
        except Exception as error:  # an outage: the scrape still answers, saying so
            log.warning("metrics.backlog_unavailable", error=type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found

    def _backlog(self, at: float) -> Iterator[Metric]:
        depth = GaugeMetricFamily("zavhoz_queue_depth", "Messages waiting", labels=["queue"])
        oldest = GaugeMetricFamily(
            "zavhoz_queue_oldest_seconds", "Age of the oldest waiting message", labels=["queue"]
        )
        for queue, (n, sent) in queue_backlog().items():
            depth.add_metric([queue], n)
            oldest.add_metric([queue], 0.0 if sent is None else max(0.0, at - sent))
        rows = GaugeMetricFamily("zavhoz_outbox_rows", "Outbox rows by state", labels=["state"])
        pending_age = GaugeMetricFamily(
            "zavhoz_outbox_oldest_pending_seconds", "Age of the oldest pending outbox row"
        )
        letters = GaugeMetricFamily(
            "zavhoz_dead_letters_waiting", "Dead-lettered commands not replayed"
        )
        last = GaugeMetricFamily(
            "zavhoz_job_last_started_timestamp_seconds",
            "When each scheduled job last started",
            labels=["job"],
        )
        took = GaugeMetricFamily(
            "zavhoz_job_last_duration_seconds", "How long its last run took", labels=["job"]
        )
        failed = GaugeMetricFamily(
            "zavhoz_job_failed", "1 when the job's last run failed", labels=["job"]
        )
        failures = CounterMetricFamily(
            "zavhoz_job_failures", "Failed runs of each scheduled job", labels=["job"]
        )
        with session_scope() as session:
            states, first = outbox_states(session)
            waiting = letters_waiting(session)
            runs: list[Any] = list(
                session.execute(
                    select(
                        JobRun.job,
                        JobRun.started_at,
                        JobRun.duration_s,
                        JobRun.outcome,
                        JobRun.failures,
                    )
                )
            )
        for state, n in states.items():
            rows.add_metric([state], n)
        pending_age.add_metric(
            [], 0.0 if first is None else max(0.0, at - as_utc(first).timestamp())
        )
        letters.add_metric([], waiting)
        for job, started, duration, outcome, failed_runs in runs:
            last.add_metric([job], as_utc(started).timestamp())
            took.add_metric([job], float(duration))
            failed.add_metric([job], 1 if outcome == "failed" else 0)
            failures.add_metric([job], int(failed_runs or 0))
        yield from (depth, oldest, rows, pending_age, letters, last, took, failed, failures)
