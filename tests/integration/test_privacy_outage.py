"""An erasure whose worker loses PostgreSQL in the middle of its steps: what the steps committed
stays done, the task retries through the outage, and once the database is back the erasure
finishes, the user is told once, and nothing of them is left. A real worker process, PostgreSQL
behind a TcpProxy cut for that worker only, Redis, the sandbox over HTTP. And one cut off from
Redis (not the broker) at step one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from celery import Celery
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.commands import Actor, EraseMe
from core.texts import t
from db.models import Comment, ErasureAudit, Request, User
from tests.support.pii import scan_database
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI
from tests.support.tcp_proxy import TcpProxy, proxy_for, via_proxy

ZQ = 987654321
PROFILE = {"username": "zqerased", "first_name": "Zeldarine", "last_name": "Quixotova"}
NEEDLES = [*PROFILE.values(), "purple-wombat"]
REQUESTS = 600


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    made = create_engine(pg_url)
    yield made
    made.dispose()


def _seed(engine: Engine) -> None:
    with Session(engine) as s:
        zq = User(telegram_id=ZQ, role="resident", language="en", **PROFILE)
        staff = User(telegram_id=2001, role="staff", language="en", first_name="Boris")
        s.add_all([zq, staff])
        s.flush()
        for n in range(REQUESTS):
            request = Request(
                author_id=zq.id, title=f"purple-wombat {n}", description="drips", location="Hall"
            )
            s.add(request)
            s.flush()
            s.add_all(
                [
                    Comment(request_id=request.id, author_id=zq.id, text="purple-wombat says"),
                    Comment(request_id=request.id, author_id=staff.id, text="Zeldarine, at 5"),
                ]
            )
        s.commit()


def _audit(engine: Engine) -> ErasureAudit | None:
    with Session(engine) as s:
        return s.scalars(select(ErasureAudit)).first()


def _under_way(engine: Engine) -> bool:
    row = _audit(engine)
    return row is not None and row.pending is not None and row.pending["cursor"] > 0


def _finished(engine: Engine) -> bool:
    row = _audit(engine)
    return row is not None and row.finished_at is not None


def _until(what: str, check: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(every)


def test_an_erasure_cut_off_from_postgresql_mid_way_finishes_once_it_is_back(
    procs: Processes,
    live_sandbox: SandboxAPI,
    pg_url: str,
    redis_url: str,
    engine: Engine,
) -> None:
    _seed(engine)
    live_sandbox._call("POST", "/sandbox/users", {"id": ZQ})
    proxy: TcpProxy = proxy_for(pg_url)
    try:
        worker = procs.worker(
            "w1",
            "-Q",
            "privacy,notifications",
            "-c",
            "1",
            DATABASE_URL=via_proxy(pg_url, proxy),
            # Small steps: the erasure is still under way when the database goes.
            ERASURE_STEP_REQUESTS="5",
            ERASURE_STEP_ROWS="20",
        )
        command = EraseMe(idempotency_key="tg-update:1", actor=Actor(user_id=ZQ, chat_id=ZQ))
        producer = Celery("test-producer", broker=redis_url, set_as_current=False)
        producer.send_task(command.task_name, kwargs=command.to_kwargs(), queue="privacy")

        _until("the steps under way", lambda: _under_way(engine), timeout=120, every=0.02)
        proxy.pause()
        with Session(engine) as s:
            # Step one committed before the cut: nothing identifies them already.
            assert s.scalars(select(User).where(User.telegram_id == ZQ)).first() is None
        time.sleep(5)
        cut_off = _audit(engine)
        assert cut_off is not None and cut_off.finished_at is None
        proxy.resume()

        _until("the erasure finished", lambda: _finished(engine), timeout=120, every=0.5)
        _assert_told_once(live_sandbox)
        done = _audit(engine)
        assert done is not None and done.pending is None
        assert done.counts["requests"] == REQUESTS and done.counts["comments"] == REQUESTS
        assert done.counts["mentions"] == REQUESTS
        assert "privacy.scrub_retry" in worker.log()
        assert scan_database(engine, NEEDLES, ZQ) == []
        with Session(engine) as s:
            # Other people's words stay, without the name.
            assert set(s.scalars(select(Comment.text))) == {"erased user, at 5"}
    finally:
        procs.stop_all()
        proxy.close()


def _assert_told_once(sandbox: SandboxAPI) -> None:
    """The user hears that the erasure is done, once (a second message would come within 2 s)."""
    erased = t("privacy.erased", "en")
    _until("the user told", lambda: any(m["text"] == erased for m in sandbox.messages(ZQ)), 60, 0.5)
    time.sleep(2)
    assert [m["text"] for m in sandbox.messages(ZQ)].count(erased) == 1


@pytest.mark.timeout(400)
def test_an_erasure_whose_worker_is_killed_mid_way_is_finished_by_another(
    procs: Processes,
    live_sandbox: SandboxAPI,
    redis_url: str,
    engine: Engine,
) -> None:
    """SIGKILL of the whole worker (a host lost) between two scrub steps: the task comes back
    to another worker (Redis' visibility timeout), which goes on from the step saved."""
    import signal

    _seed(engine)
    live_sandbox._call("POST", "/sandbox/users", {"id": ZQ})
    small_steps = {"ERASURE_STEP_REQUESTS": "5", "ERASURE_STEP_ROWS": "20"}
    first = procs.worker("w1", "-Q", "privacy,notifications", "-c", "1", **small_steps)
    command = EraseMe(idempotency_key="tg-update:2", actor=Actor(user_id=ZQ, chat_id=ZQ))
    producer = Celery("test-producer", broker=redis_url, set_as_current=False)
    producer.send_task(command.task_name, kwargs=command.to_kwargs(), queue="privacy")

    _until("the steps under way", lambda: _under_way(engine), timeout=120, every=0.02)
    first.kill(signal.SIGKILL)
    killed_at = _audit(engine)
    assert killed_at is not None and killed_at.finished_at is None
    procs.worker("w2", "-Q", "privacy,notifications", "-c", "1", **small_steps)

    _until("another worker finished the erasure", lambda: _finished(engine), timeout=240, every=0.5)
    _assert_told_once(live_sandbox)
    done = _audit(engine)
    assert done is not None and done.pending is None
    assert done.counts["requests"] == REQUESTS and done.counts["comments"] == REQUESTS
    assert scan_database(engine, NEEDLES, ZQ) == []


@pytest.mark.timeout(300)
def test_an_erasure_cut_off_from_redis_at_step_one_runs_once_it_is_back(
    procs: Processes,
    live_sandbox: SandboxAPI,
    redis_url: str,
    engine: Engine,
) -> None:
    """Step one deletes the user's dialog keys in Redis inside the command's transaction: with
    Redis gone (the broker is not: BROKER_URL stays direct) nothing of it commits, the command
    is retried, and once Redis is back the erasure runs whole, keys included."""
    import redis

    _seed(engine)
    live_sandbox._call("POST", "/sandbox/users", {"id": ZQ})
    keys = [f"fsm:{ZQ}:{ZQ}:default:state", f"fsm:{ZQ}:{ZQ}:default:data"]
    other = "fsm:2001:2001:default:state"
    store = redis.Redis.from_url(redis_url)
    for key in (*keys, other):
        store.set(key, "purple-wombat")
    proxy: TcpProxy = proxy_for(redis_url)
    try:
        worker = procs.worker(
            "w1", "-Q", "privacy,notifications", "-c", "1", REDIS_URL=via_proxy(redis_url, proxy)
        )
        proxy.pause()
        command = EraseMe(idempotency_key="tg-update:3", actor=Actor(user_id=ZQ, chat_id=ZQ))
        producer = Celery("test-producer", broker=redis_url, set_as_current=False)
        producer.send_task(command.task_name, kwargs=command.to_kwargs(), queue="privacy")
        time.sleep(8)
        assert _audit(engine) is None  # nothing of step one committed
        with Session(engine) as s:
            assert s.scalars(select(User).where(User.telegram_id == ZQ)).one_or_none()
        assert all(store.exists(key) for key in keys)
        proxy.resume()

        _until("the erasure finished", lambda: _finished(engine), timeout=180, every=0.5)
        _assert_told_once(live_sandbox)
        assert not any(store.exists(key) for key in keys) and store.exists(other)
        assert scan_database(engine, NEEDLES, ZQ) == []
        # Run uncounted (the redelivery count lives in Redis), retried through the outage.
        log = worker.log()
        assert "task.delivery_uncounted" in log and log.count('"command.retry"') >= 2
    finally:
        store.close()
        procs.stop_all()
        proxy.close()
