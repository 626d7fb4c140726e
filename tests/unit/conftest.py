"""Unit fixtures: SQLite migrated by Alembic, the sandbox in a thread, an in-process worker."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import Engine

from core.settings import get_settings
from db import migrate
from db.session import configure_engine, dispose_engine, make_engine
from sandbox.server import SandboxThread
from tests.support.sandbox_api import SandboxAPI


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxThread]:
    with SandboxThread() as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxThread, monkeypatch: pytest.MonkeyPatch) -> SandboxAPI:
    api = SandboxAPI(sandbox_server.url)
    api.reset()
    monkeypatch.setenv("TELEGRAM_API_URL", sandbox_server.url)
    # The in-process worker may have read settings since the test began (a task left by an
    # earlier test): read them again, with this sandbox. A read that began before setenv may
    # still store its stale result after a clear (lru_cache stores when it returns): clear until
    # what is cached names this sandbox.
    for _ in range(100):
        get_settings.cache_clear()
        if get_settings().telegram_api_url is not None:
            break
        time.sleep(0.01)
    return api


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A fresh SQLite database built by the migrations (never create_all)."""
    url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    migrate.upgrade(url)
    engine = make_engine(url)
    configure_engine(engine)
    yield engine
    dispose_engine()


@pytest.fixture(scope="session")
def inproc_worker() -> Iterator[object]:
    """Our Celery app served by an in-process worker over the in-memory transport.

    Real messages, serialization and routing: the same kombu memory broker is shared by any
    producer in this process (the bot's CommandQueue included). Never task_always_eager.
    """
    import workers.command_tasks
    import workers.maintenance_tasks
    import workers.notification_tasks
    import workers.report_tasks  # noqa: F401
    from core.queues import ALL_QUEUES
    from workers.app import app

    app.conf.update(broker_url="memory://", broker_transport_options={})
    # What earlier tests left in the shared memory broker (follow-ups sent with no worker up)
    # is theirs: run here, against this test's database, it only failed, and a worker thread
    # reading settings meanwhile could cache them from before this test's own (a flaky retry
    # test saw the default backoff).
    with app.connection_for_write() as conn:
        for name in ALL_QUEUES:
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(name)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False) as worker:
        yield worker
    from workers.telegram import close_clients

    close_clients()  # the worker threads' Bot API sessions, closed rather than left to exit


@pytest.fixture(autouse=True)
def fresh_limiters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with empty rate-limit state (a 429 pause must not leak into the next)."""
    from core import pacing

    monkeypatch.setattr(pacing, "_limiters", {})
