"""Optional on-disk state of the sandbox: one SQLite file, written incrementally.

The state marks what it changed (:meth:`Store.mark`); :meth:`Store.flush` writes those
objects in one small transaction. The server flushes before every HTTP answer, so an update a
user pushed or a message the bot got a 200 for is on disk before anyone learns about it.
WAL with ``synchronous=NORMAL`` keeps each commit cheap (no fsync) and survives SIGKILL at
any point: a transaction is either in the WAL file or it never happened (only a power cut
may lose the last commits).

Layout: ``records`` holds one JSON row per object (kind + key), ``updates`` the pending
updates, ``blobs`` file contents by SHA-256 (a photo's sizes share one blob).
Faults, stats, flood windows and config overrides are test knobs and are never stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sandbox.state import Chat, FileRec, StoredMessage, User

if TYPE_CHECKING:
    from sandbox.state import State

FILE_NAME = "sandbox.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS updates (update_id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (sha TEXT PRIMARY KEY, data BLOB NOT NULL);
"""
# Survives reset(): an update id handed out once is never handed out again.
KEEP_ON_RESET = ("meta", "last_update_id")
T = TypeVar("T")


def _build(cls: type[T], row: dict[str, Any], /, **extra: Any) -> T:
    """A dataclass from a stored row; fields dropped since it was written are ignored."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row.items() if k in known}, **extra)


class StateInUse(RuntimeError):
    pass


class Store:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / FILE_NAME
        # Autocommit mode: transactions are opened explicitly in _transaction().
        self.db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=0
        )
        try:
            # One sandbox per file: a second one would hand out the same update ids. The lock
            # is taken by the first write and held until close (or death of the process).
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        except sqlite3.OperationalError as exc:
            self.db.close()
            raise StateInUse(f"{self.path} is in use by another sandbox ({exc})") from None
        # (kind, key) -> the live object (serialised at flush time) or None to delete it.
        self._dirty: dict[tuple[str, Any], Any] = {}
        self._closed = False

    def mark(self, kind: str, key: Any, obj: Any) -> None:
        self._dirty[(kind, key)] = obj

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def flush(self) -> None:
        if not self._dirty or self._closed:  # closed: a request finishing during shutdown
            return
        dirty, self._dirty = self._dirty, {}
        try:
            with self._transaction() as db:
                for (kind, key), obj in dirty.items():
                    self._write(db, kind, key, obj)
                offset = dirty.get(("meta", "confirmed_offset"))
                if offset is not None:  # pending updates are exactly those at/after it
                    db.execute("DELETE FROM updates WHERE update_id < ?", (offset,))
        except BaseException:
            self._dirty = {**dirty, **self._dirty}  # retry with the next flush
            raise

    def _write(self, db: sqlite3.Connection, kind: str, key: Any, obj: Any) -> None:
        if kind == "update":
            body = json.dumps(obj, default=str)
            db.execute("INSERT OR REPLACE INTO updates VALUES (?, ?)", (key, body))
            return
        rkey = str(key)
        if obj is None:
            db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, rkey))
            return
        value: Any
        if kind == "chat":
            value = {"id": obj.id, "type": obj.type, "title": obj.title}
        elif kind == "file":
            sha = hashlib.sha256(obj.data).hexdigest()
            db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (sha, obj.data))
            value = {k: v for k, v in vars(obj).items() if k != "data"} | {"blob": sha}
        elif kind in ("user", "message"):
            value = vars(obj)
        else:  # meta values, callback queries, command lists: plain JSON already
            value = obj
        # default=str: an odd value must not make every later flush fail.
        db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
            (kind, rkey, json.dumps(value, default=str)),
        )

    def clear(self) -> None:
        """Forget everything but the update id counter (the control API's reset)."""
        self._dirty.clear()
        with self._transaction() as db:
            db.execute("DELETE FROM records WHERE NOT (kind = ? AND key = ?)", KEEP_ON_RESET)
            db.execute("DELETE FROM updates")
            db.execute("DELETE FROM blobs")

    def load(self, state: State) -> None:
        """Fill a freshly cleared state from disk."""
        rows: dict[str, list[Any]] = {}
        meta: dict[str, Any] = {}
        for kind, key, value in self.db.execute("SELECT kind, key, value FROM records"):
            if kind == "meta":
                meta[key] = json.loads(value)
            else:
                rows.setdefault(kind, []).append((key, json.loads(value)))
        for _, data in rows.get("user", []):
            user = _build(User, data)
            state.users[user.id] = user
        for _, data in rows.get("chat", []):
            owner = state.users.get(data["id"]) if data["type"] == "private" else None
            state.chats[data["id"]] = _build(Chat, data, user=owner)
        for _, data in rows.get("message", []):
            msg = _build(StoredMessage, data)
            state.messages.setdefault(msg.chat_id, {})[msg.message_id] = msg
        blobs = dict(self.db.execute("SELECT sha, data FROM blobs"))
        for _, data in rows.get("file", []):
            rec = _build(FileRec, data, data=blobs[data.pop("blob")])
            state.files[rec.file_id] = rec
            state.files_by_path[rec.file_path] = rec
        state.callback_queries = dict(rows.get("callback", []))
        state.commands = dict(rows.get("commands", []))
        state.updates = [
            json.loads(body) for (body,) in self.db.execute("SELECT body FROM updates ORDER BY 1")
        ]
        state.last_update_id = meta.get("last_update_id", 0)
        state.confirmed_offset = meta.get("confirmed_offset", 0)
        state.last_file_no = meta.get("last_file_no", 0)
        state.webhook = meta.get("webhook")
        state.generation = meta.get("generation", state.generation)

    def close(self) -> None:
        self.flush()
        self._closed = True
        self.db.close()
