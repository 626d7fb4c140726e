"""Fixtures for the real PostgreSQL and Redis (integration and end-to-end tests).

Unreachable services skip these tests on a developer's machine; CI sets
ZAVHOZ_REQUIRE_SERVICES=1, which turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from db import migrate
from sandbox.server import SandboxThread
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"
# Our own Redis database, flushed per test: never the developer's db 0. Two test runs at once
# on one machine each need their own (ZAVHOZ_TEST_REDIS_DB).
REDIS_TEST_DB = int(os.environ.get("ZAVHOZ_TEST_REDIS_DB", "14"))


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if os.environ.get("ZAVHOZ_REQUIRE_SERVICES") == "1":
        pytest.fail(message + "; ZAVHOZ_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", PG_DEFAULT)
    try:
        engine = create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:
        _unavailable("PostgreSQL", error)
    return url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database per test, built by `alembic upgrade head`, dropped afterwards."""
    name = f"zavhoz_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def clean_redis_db(db: int) -> Iterator[str]:
    """The URL of database `db` on the test Redis, flushed before and after."""
    base = urlsplit(os.environ.get("TEST_REDIS_URL", REDIS_DEFAULT))
    url = f"redis://{base.hostname or '127.0.0.1'}:{base.port or 6379}/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except Exception as error:
        _unavailable("Redis", error)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    with clean_redis_db(REDIS_TEST_DB) as url:
        yield url


@pytest.fixture
def live_sandbox() -> Iterator[SandboxAPI]:
    with SandboxThread() as server:
        yield SandboxAPI(server.url)


# ZAVHOZ_TEST_BROKER=amqp runs the tests that take `broker_url` on RabbitMQ (CI runs the
# lifecycle and the broadcast fault test so, beside the whole suite on Redis).
AMQP_DEFAULT = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def amqp_url() -> str:
    """The test RabbitMQ, with our queues emptied."""
    from kombu import Connection

    from core.queues import ALL_QUEUES

    url = os.environ.get("TEST_AMQP_URL", AMQP_DEFAULT)
    try:
        with Connection(url, connect_timeout=3) as conn:
            for queue in ALL_QUEUES:
                channel: Any = conn.channel()
                with contextlib.suppress(*conn.channel_errors):  # not declared yet
                    channel.queue_purge(queue)
    except Exception as error:
        _unavailable("RabbitMQ", error)
    return url


@pytest.fixture
def broker_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """The broker for this test's processes: Redis, or RabbitMQ (ZAVHOZ_TEST_BROKER=amqp)."""
    if os.environ.get("ZAVHOZ_TEST_BROKER", "redis") != "amqp":
        return redis_url
    url: str = request.getfixturevalue("amqp_url")
    return url


@pytest.fixture
def procs(
    tmp_path: Path, pg_url: str, redis_url: str, broker_url: str, live_sandbox: SandboxAPI
) -> Iterator[Processes]:
    """Real processes wired to this test's database, Redis, broker and sandbox."""
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": broker_url,
        "TELEGRAM_API_URL": live_sandbox.url,
        "LOG_FORMAT": "json",
        "VAR_DIR": str(tmp_path / "var"),
    }
    processes = Processes(tmp_path, env)
    yield processes
    processes.stop_all()


@pytest.fixture
def pg(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """This process's sessions (db.session) on a fresh PostgreSQL database."""
    from core.settings import get_settings
    from db.session import configure_engine, dispose_engine, make_engine

    monkeypatch.setenv("DATABASE_URL", pg_url)
    get_settings.cache_clear()
    engine = make_engine(pg_url)
    configure_engine(engine)
    yield engine
    dispose_engine()
