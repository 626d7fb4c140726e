"""Dialog state on embedded defaults: a SQLite file under VAR_DIR instead of memory, so a
restart of `make run` mid-dialog (or between a Submit and its enqueue) keeps the draft.

Each call is one short statement on a local file (about 0.1 ms), run on the event loop like
the in-memory storage; WAL with synchronous=NORMAL survives the process being killed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, StateType, StorageKey


class SqliteStorage(BaseStorage):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS dialogs"
            " (key TEXT PRIMARY KEY, state TEXT, data TEXT NOT NULL DEFAULT '{}')"
        )
        self._keys = DefaultKeyBuilder(with_destiny=True)

    def _row(self, key: StorageKey) -> tuple[str | None, str] | None:
        found = self._db.execute(
            "SELECT state, data FROM dialogs WHERE key = ?", (self._keys.build(key),)
        ).fetchone()
        return None if found is None else (found[0], found[1])

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        self._db.execute(
            "INSERT INTO dialogs (key, state) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state",
            (self._keys.build(key), value),
        )

    async def get_state(self, key: StorageKey) -> str | None:
        row = self._row(key)
        return None if row is None else row[0]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO dialogs (key, data) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET data = excluded.data",
            (self._keys.build(key), json.dumps(dict(data))),
        )

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        row = self._row(key)
        data: dict[str, Any] = {} if row is None else json.loads(row[1])
        return data

    async def close(self) -> None:
        self._db.close()
