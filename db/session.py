"""Engine and session factory, one engine per process (re-created after fork)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

_state: dict[str, Any] = {}


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Bound values are user text: keep them out of exception messages, logs and Sentry.
    kwargs["hide_parameters"] = True
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if "poolclass" not in kwargs:
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # SQLite has no SELECT ... FOR UPDATE: transactions take the write lock when they begin
    # (BEGIN IMMEDIATE, below), so claims such as "the next pending outbox row" are exclusive.
    # That serializes writers, which one machine on embedded defaults can afford.
    dbapi_connection.isolation_level = None  # pysqlite must not emit its own deferred BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine() -> Engine:
    # A pooled connection must never cross a fork: each process builds its own engine.
    if _state.get("pid") != os.getpid():
        _state.update(pid=os.getpid(), engine=make_engine(get_settings().db_url))
        _state["factory"] = sessionmaker(_state["engine"], expire_on_commit=False)
    engine: Engine = _state["engine"]
    return engine


def configure_engine(engine: Engine) -> None:
    """Use this engine in this process (tests point it at their own database)."""
    _state.update(pid=os.getpid(), engine=engine)
    _state["factory"] = sessionmaker(engine, expire_on_commit=False)


def dispose_engine() -> None:
    """Forget the inherited pool after fork without closing the parent's connections."""
    engine = _state.pop("engine", None)
    _state.pop("pid", None)
    if engine is not None:
        engine.dispose(close=False)


def new_session() -> Session:
    get_engine()
    session: Session = _state["factory"]()
    return session


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, always close."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
