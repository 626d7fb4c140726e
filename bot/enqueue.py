"""Sending commands to the workers by task name: the bot's only way to change anything.

An update counts as handled only once its command is in the broker. While the broker is down
`send` keeps retrying with backoff (polling: forever, so the offset is not advanced and nothing
is lost; webhook: up to a deadline, then the error makes the webhook answer 5xx and Telegram
redelivers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from celery import Celery
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential_jitter,
)

from core.commands import Command
from core.logging import get_logger
from core.metrics import metrics
from core.queues import queue_for

log = get_logger(__name__)


class BrokerUnavailable(Exception):
    pass


def log_retry(event: str) -> Callable[[RetryCallState], None]:
    """A tenacity `before_sleep` that logs `event` with the attempt, the wait and the error."""

    def log_it(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            event,
            attempt=state.attempt_number,
            retry_in_s=round(state.next_action.sleep, 2) if state.next_action else None,
            error=f"{type(error).__name__}: {error}",
        )

    return log_it


_log_broker_retry = log_retry("broker.unavailable")


def _broker_retry(state: RetryCallState) -> None:
    metrics().broker_retries.inc()
    _log_broker_retry(state)


def _transport_options(broker_url: str) -> dict[str, object]:
    if broker_url.startswith("redis"):
        return {"socket_connect_timeout": 3, "socket_timeout": 5}
    if broker_url.startswith(("amqp", "pyamqp")):
        # An update counts as handled once RabbitMQ confirms it has the command.
        return {"confirm_publish": True}
    return {}


class CommandQueue:
    def __init__(
        self,
        broker_url: str,
        *,
        give_up_after_s: float | None = None,
        max_backoff_s: float = 10.0,
    ) -> None:
        # Task arguments hold user text: the message headers carry a redacted summary instead.
        self.celery = Celery(
            "zavhoz-bot",
            broker=broker_url,
            set_as_current=False,
            amqp="core.observability:RedactingAMQP",
        )
        self.celery.conf.update(
            task_serializer="json",
            accept_content=["json"],
            broker_transport_options=_transport_options(broker_url),
            broker_connection_timeout=3,
        )
        self.give_up_after_s = give_up_after_s
        self.max_backoff_s = max_backoff_s

    def publish(self, command: Command) -> None:
        """One attempt, blocking (`send` retries it; benchmarks publish with it directly)."""
        # retry=False: kombu's own retry would block silently; we retry with a log line.
        self.celery.send_task(
            command.task_name,
            kwargs=command.to_kwargs(),
            queue=queue_for(command.task_name),
            retry=False,
            ignore_result=True,
        )

    async def send(self, command: Command) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=0.2, max=self.max_backoff_s, jitter=0.5),
            stop=stop_never
            if self.give_up_after_s is None
            else stop_after_delay(self.give_up_after_s),
            before_sleep=_broker_retry,
            reraise=True,
        )
        started = time.perf_counter()
        try:
            async for attempt in retrying:
                with attempt:
                    await asyncio.to_thread(self.publish, command)
        except Exception as error:
            raise BrokerUnavailable(str(error)) from error
        metrics().enqueue_seconds.observe(time.perf_counter() - started)
        log.info("command.enqueued", command=command.task_name)

    def close(self) -> None:
        self.celery.close()
