"""Prometheus metrics of every process: what each one counts, and serving them (`METRICS_PORT`).

Unset `METRICS_PORT`: nothing is served and the metrics stay in memory (cheap; tests read them
through `registry()`). Set: `setup` switches prometheus-client to multiprocess mode in a
directory of this process's own (a Celery worker's pool children are forked from it, write
their values there, and its server adds them up), then serves on the first free port from
`METRICS_PORT` on, so several processes started with the same settings on one host do not
collide, and announces where (Redis, or a file under `VAR_DIR` when embedded) for
`zavhoz status`. Callers ask `metrics()` each time: `setup` replaces the in-memory set.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.registry import Collector

from core.logging import get_logger
from core.settings import Settings

log = get_logger(__name__)
M = TypeVar("M")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Marks a directory this code made, so a process started by another (`zavhoz up`'s children
# inherit its environment) makes its own instead of adding into its parent's.
_OWNER_ENV = "ZAVHOZ_METRICS_DIR_OWNER"
PORT_SPAN = 100  # how many ports from METRICS_PORT on a process tries
ENDPOINT_PREFIX = "zavhoz:metrics:"
ANNOUNCE_TTL_S = 60
_ANNOUNCE_EVERY_S = 20

# What a send to Telegram came to (workers/outbox.py): the alert rules and dashboard use these.
SEND_OUTCOMES = ("sent", "429", "403", "400", "5xx", "network")

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_LATENCY = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Every metric a zavhoz process may count (each process uses the ones that concern it)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._r = registry
        self._made: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _once(self, name: str, make: Callable[[], M]) -> M:
        # Made on first use, so a process exports only what it counts (no empty bot histograms
        # in a worker's scrape); under a lock, as a threads pool may ask for one twice at once.
        with self._lock:
            found = self._made.get(name)
            if found is None:
                found = self._made[name] = make()
            return cast(M, found)

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        return self._once(name, lambda: Counter(name, doc, labels, registry=self._r))

    def _histogram(
        self, name: str, doc: str, buckets: tuple[float, ...], *labels: str
    ) -> Histogram:
        return self._once(
            name, lambda: Histogram(name, doc, labels, buckets=buckets, registry=self._r)
        )

    @property
    def updates(self) -> Counter:
        return self._counter("zavhoz_bot_updates", "Updates the bot received, by type", "type")

    @property
    def enqueue_seconds(self) -> Histogram:
        return self._histogram(
            "zavhoz_bot_enqueue_seconds",
            "Time to put one command on the broker, retries included",
            _FAST,
        )

    @property
    def broker_retries(self) -> Counter:
        return self._counter(
            "zavhoz_bot_broker_retries", "Enqueues retried because the broker was unreachable"
        )

    @property
    def tasks(self) -> Counter:
        return self._counter("zavhoz_tasks", "Tasks run, by name and outcome", "task", "outcome")

    @property
    def task_seconds(self) -> Histogram:
        return self._histogram("zavhoz_task_duration_seconds", "Task run time", _SLOW, "task")

    @property
    def command_latency(self) -> Histogram:
        return self._histogram(
            "zavhoz_command_latency_seconds",
            "From the bot's receipt of an update to Telegram accepting the reply",
            _LATENCY,
            "command",
        )

    @property
    def sends(self) -> Counter:
        return self._counter(
            "zavhoz_outbox_sends",
            "Sends to Telegram by outcome (sent, 429, 403, 400, 5xx, network)",
            "outcome",
        )

    @property
    def limiter_wait(self) -> Histogram:
        return self._histogram(
            "zavhoz_limiter_wait_seconds",
            "Time a send waited for a slot of the shared rate limiter",
            (0.001, *_FAST),
        )


_local = CollectorRegistry()
_state: dict[str, Any] = {}
_servers: list[Any] = []  # what this process serves on (tests shut theirs down)


def metrics() -> Metrics:
    found: Metrics | None = _state.get("metrics")
    if found is None:
        found = _state["metrics"] = Metrics(_local)
    return found


def registry() -> CollectorRegistry:
    """Where this process's in-memory metrics are (tests read samples from it)."""
    return _local


# --- serving ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    role: str
    host: str
    port: int
    pid: int
    started: float

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"


def setup(settings: Settings, role: str, collectors: Iterable[Collector] = ()) -> Endpoint | None:
    """Serve this process's metrics (and its forked children's) if `METRICS_PORT` is set."""
    if settings.metrics_port is None:
        return None
    path = _multiprocess_dir(role)
    # The value class is read when a metric (or a label's child) is made: from now on they are
    # files in `path`, which children forked later inherit.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _state["metrics"] = Metrics(None)
    served = CollectorRegistry()
    multiprocess.MultiProcessCollector(served, path=path)  # type: ignore[no-untyped-call]
    for collector in collectors:
        served.register(collector)
    port = _serve(served, settings.metrics_host, settings.metrics_port)
    endpoint = Endpoint(role, socket.gethostname(), port, os.getpid(), time.time())
    _announce(settings, endpoint)
    log.info("metrics.serving", role=role, port=port)
    return endpoint


def _multiprocess_dir(role: str) -> str:
    given = os.environ.get(MULTIPROC_ENV)
    if given and os.environ.get(_OWNER_ENV) is None:
        return given  # the operator's: they keep it per process group and empty it at start
    path = tempfile.mkdtemp(prefix=f"zavhoz-metrics-{role}-")
    os.environ[MULTIPROC_ENV] = path
    os.environ[_OWNER_ENV] = str(os.getpid())
    atexit.register(_remove_dir, path, os.getpid())
    return path


def _remove_dir(path: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked child that happens to run atexit
        shutil.rmtree(path, ignore_errors=True)


def _serve(served: CollectorRegistry, host: str, first: int) -> int:
    from prometheus_client import start_http_server

    for port in range(first, min(first + PORT_SPAN, 65536)):
        try:
            server, _ = start_http_server(port, addr=host, registry=served)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            continue
        _servers.append(server)
        return port
    raise OSError(errno.EADDRINUSE, f"no free port in {first}..{first + PORT_SPAN - 1}")


# --- where each process serves (for `zavhoz status`) -------------------------------------------


def _announce(settings: Settings, endpoint: Endpoint) -> None:
    record = json.dumps(asdict(endpoint))
    if settings.redis_url is None:
        path = _endpoints_dir(settings) / f"{endpoint.port}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(record)
        atexit.register(_forget_file, path, endpoint.pid)
        return
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    key = f"{ENDPOINT_PREFIX}{endpoint.host}:{endpoint.port}"

    def refresh() -> None:
        while True:
            # An outage: the record expires, and comes back with Redis.
            with contextlib.suppress(redis.RedisError):
                client.set(key, record, ex=ANNOUNCE_TTL_S)
            time.sleep(_ANNOUNCE_EVERY_S)

    threading.Thread(target=refresh, name="metrics-announce", daemon=True).start()

    def forget() -> None:
        if os.getpid() == endpoint.pid:
            with contextlib.suppress(redis.RedisError):
                client.delete(key)

    atexit.register(forget)


def _endpoints_dir(settings: Settings) -> Path:
    return settings.var_dir / "metrics"


def _forget_file(path: Path, owner: int) -> None:
    if os.getpid() == owner:
        path.unlink(missing_ok=True)


def endpoints(settings: Settings) -> list[Endpoint]:
    """The processes serving metrics now, as they announced themselves."""
    if settings.redis_url is None:
        found = []
        for path in sorted(_endpoints_dir(settings).glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                endpoint = Endpoint(**json.loads(path.read_text()))
                if _alive(endpoint.pid):
                    found.append(endpoint)
        return found
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    try:
        keys = sorted(client.scan_iter(match=f"{ENDPOINT_PREFIX}*", count=1000))
        records = client.mget(keys) if keys else []
    finally:
        client.close()
    return [Endpoint(**json.loads(r)) for r in records if r is not None]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
