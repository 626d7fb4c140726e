"""maintenance.orphans on SQLite (foreign keys turned off to plant orphans) with fakeredis for
dialog keys: scan changes nothing, apply backs up then deletes exactly the orphans, restore
puts back what has its parents again. The planting helpers serve the PostgreSQL test too."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from core.clock import now
from core.settings import get_settings
from db.models import (
    Attachment,
    Base,
    Broadcast,
    Comment,
    GeneratedFile,
    Outbox,
    Request,
    RequestEvent,
    User,
)
from workers.upkeep import orphans

GHOST_TG = 9999  # a user deleted with foreign keys off: their rows and keys are orphans
STRANGER_TG = 7777  # never a user (or erased: the id is gone either way)
TABLES = ("users", "requests", "comments", "attachments", "request_events", "outbox", "broadcasts")


@dataclass
class Planted:
    expected: dict[str, set[str]]  # kind -> ids or keys
    lost_request: int  # deleted; re-created by the restore test
    ghost_id: int  # users.id of the deleted user with telegram id GHOST_TG
    restorable: dict[str, int] = field(default_factory=dict)  # after re-creating both
    skipped: int = 0
    aged: set[str] = field(default_factory=set)  # Redis keys idle past DIALOG_TTL


def _request(author: int, title: str) -> Request:
    return Request(author_id=author, title=title, description="d", location="Hall")


def _outbox(n: int, tag: str, **kw: Any) -> list[dict[str, Any]]:
    return [
        {"dedupe_key": f"{tag}:{i}", "chat_id": 1, "method": "sendMessage", **kw}
        | {"payload": {"text": f"{tag} {i}"}}
        for i in range(n)
    ]


def plant(engine: Engine, n: int, big: int, drop: Callable[[Engine, list[str]], None]) -> Planted:
    """A clean data set plus orphans: `big` comments, `n` of every other table kind."""
    at = now()
    ids: dict[str, list[int]] = {}
    with Session(engine) as s:
        alice = User(telegram_id=1001, role="admin")
        bob = User(telegram_id=1002, role="staff")
        erased = User(telegram_id=None, erased_at=at - timedelta(days=3))
        ghost = User(telegram_id=GHOST_TG)
        s.add_all([alice, bob, erased, ghost])
        s.flush()
        kept, lost1, lost2 = (
            _request(alice.id, "ok"),
            _request(alice.id, "l1"),
            _request(bob.id, "l2"),
        )
        s.add_all([kept, lost1, lost2])
        s.flush()
        # Clean children.
        s.add_all([Comment(request_id=kept.id, author_id=bob.id, text="fine") for _ in range(3)])
        s.add(Attachment(request_id=kept.id, kind="photo", file_id="f-ok"))
        s.add(RequestEvent(request_id=kept.id, actor_id=alice.id, action="created"))
        # Children of the requests about to be lost: the first of each on lost1.
        split = {"comments": 2, "attachments": 1, "request_events": 1}
        totals = {"comments": big, "attachments": n, "request_events": n}
        rows: dict[str, list[dict[str, Any]]] = {}
        for table, total in totals.items():
            rows[table] = [
                {"request_id": lost1.id if i < split[table] else lost2.id}
                | (
                    {"text": f"orphan {i}", "author_id": bob.id}
                    if table == "comments"
                    else {"kind": "photo", "file_id": f"f{i}"}
                    if table == "attachments"
                    else {"action": "created", "note": f"n{i}"}
                )
                for i in range(total)
            ]
            s.execute(insert(Base.metadata.tables[table]), rows[table])
        # Broadcasts: a live one, a fresh draft, an old finished one, stale drafts, one stale
        # draft that somehow has outbox rows (left alone), one to lose.
        live = Broadcast(author_id=alice.id, audience="everyone", text="t", state="sending")
        fresh = Broadcast(author_id=alice.id, audience="staff", text="t", created_at=at)
        done = Broadcast(
            author_id=alice.id,
            audience="staff",
            text="t",
            state="done",
            created_at=at - timedelta(days=9),
        )
        odd = Broadcast(
            author_id=alice.id, audience="staff", text="t", created_at=at - timedelta(days=5)
        )
        stale = [
            Broadcast(
                author_id=alice.id,
                audience="residents",
                text="t",
                created_at=at - timedelta(days=2),
            )
            for _ in range(n)
        ]
        lost_bc = Broadcast(author_id=alice.id, audience="everyone", text="t", state="sending")
        s.add_all([live, fresh, done, odd, *stale, lost_bc])
        s.flush()
        out = Base.metadata.tables["outbox"]
        s.execute(insert(out), _outbox(2, "clean", user_id=alice.id, batch_id=live.id))
        s.execute(insert(out), _outbox(1, "odd", user_id=alice.id, batch_id=odd.id))
        s.execute(insert(out), _outbox(1, "erased-sent", user_id=erased.id, state="sent"))
        s.execute(insert(out), _outbox(1, "nobody", user_id=None))
        s.execute(insert(out), _outbox(n, "ghost", user_id=ghost.id))
        s.execute(insert(out), _outbox(n, "erased", user_id=erased.id, state="pending"))
        s.execute(insert(out), _outbox(n, "lostbc", user_id=alice.id, batch_id=lost_bc.id))
        s.commit()

        def of(model: Any, *where: Any) -> set[str]:
            return {str(i) for i in s.scalars(select(model.id).where(*where))}

        expected = {
            "comments_without_request": of(Comment, Comment.request_id.in_([lost1.id, lost2.id])),
            "attachments_without_request": of(Attachment, Attachment.request_id != kept.id),
            "events_without_request": of(RequestEvent, RequestEvent.request_id != kept.id),
            "outbox_without_user": of(Outbox, Outbox.dedupe_key.like("ghost:%")),
            "outbox_of_erased_users": of(Outbox, Outbox.dedupe_key.like("erased:%")),
            "outbox_without_broadcast": of(Outbox, Outbox.dedupe_key.like("lostbc:%")),
            "stale_draft_broadcasts": {str(b.id) for b in stale},
        }
        ids = {"lost": [lost1.id, lost2.id], "ghost": [ghost.id], "bc": [lost_bc.id]}
    drop(
        engine,
        [
            f"DELETE FROM requests WHERE id IN ({ids['lost'][0]}, {ids['lost'][1]})",
            f"DELETE FROM users WHERE id = {ids['ghost'][0]}",
            f"DELETE FROM broadcasts WHERE id = {ids['bc'][0]}",
        ],
    )
    planted = Planted(expected, lost_request=ids["lost"][0], ghost_id=ids["ghost"][0])
    # After re-creating lost1 and the ghost: lost1's children, the ghost's and the erased user's
    # outbox rows and the stale drafts come back; lost2's children and the lost broadcast's
    # rows do not.
    planted.restorable = {
        "comments": split["comments"],
        "attachments": split["attachments"],
        "request_events": split["request_events"],
        "outbox": 2 * n,
        "broadcasts": n,
    }
    planted.skipped = (big - 2) + (n - 1) + (n - 1) + n
    return planted


def plant_dialogs(client: Any, planted: Planted) -> None:
    """Dialog keys in Redis: the ghost's and a stranger's are orphans, so are bob's dialog keys
    idle past DIALOG_TTL (`planted.aged`, made idle by the caller); recent places, locks,
    other keys and active users' dialogs stay."""
    keep = {
        "fsm:1001:1001:default:state": "NewRequest:title",
        "fsm:1001:1001:default:data": '{"title": "leak"}',
        "fsm:1001:1001:recent:data": '{"locations": ["Hall"]}',
        "fsm:1002:1002:recent:data": '{"locations": ["Roof"]}',  # idle, but memory: kept
        "fsm:9999:9999:default:lock": "token",  # a live bot's lock: never touched
        "celery-task-meta-x": "{}",
        "fsm:not-a-user:default:state": "x",
    }
    gone = {
        f"fsm:{GHOST_TG}:{GHOST_TG}:default:state": "NewRequest:location",
        f"fsm:{GHOST_TG}:{GHOST_TG}:default:data": '{"title": "Tap"}',
        f"fsm:{GHOST_TG}:{GHOST_TG}:recent:data": '{"locations": ["Flat 3"]}',
        f"fsm:-100500:{STRANGER_TG}:default:data": '{"x": 1}',  # a group chat
        "fsm:1002:1002:default:state": "NewRequest:title",
        "fsm:1002:1002:default:data": '{"title": "old"}',
    }
    for key, value in (keep | gone).items():
        client.set(key, value)
    client.pexpire("fsm:9999:9999:default:lock", 60_000)
    applied = f"fsm:{GHOST_TG}:{GHOST_TG}:default:applied"
    client.rpush(applied, b"41", b"42", b"\xff\xfe")  # not UTF-8: backed up as base64
    client.expire(applied, 3600)
    planted.expected["dialog_keys"] = {*gone, applied}
    planted.aged = {
        "fsm:1002:1002:default:state",
        "fsm:1002:1002:default:data",
        "fsm:1002:1002:recent:data",
    }
    planted.restorable["redis"] = len(gone)  # the applied list too, not the stranger's
    planted.skipped += 1


def drop_sqlite(engine: Engine, statements: list[str]) -> None:
    """Delete parents as a file without `PRAGMA foreign_keys` would: children stay."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, or it is ignored
        for statement in statements:
            cursor.execute(statement)
        cursor.execute("PRAGMA foreign_keys=ON")  # the pooled connection goes back as it was
        cursor.close()
    finally:
        raw.close()


def snapshot(engine: Engine) -> dict[str, list[Any]]:
    with engine.connect() as conn:
        return {
            name: sorted(tuple(r) for r in conn.execute(select(Base.metadata.tables[name])))
            for name in TABLES
        }


def redis_snapshot(client: Any) -> dict[str, Any]:
    return {k.decode(): client.dump(k) for k in sorted(client.keys("*"))}


def as_found(expected: dict[str, set[str]]) -> list[orphans.Found]:
    def order(kind: str, value: str) -> Any:
        return value if kind == "dialog_keys" else int(value)

    return [
        orphans.Found(kind, len(v), sorted(v, key=lambda x: order(kind, x))[: orphans.SAMPLE])
        for kind, v in expected.items()
        if v
    ]


def check_backup(path: Path, planted: Planted) -> None:
    assert path.parent == get_settings().var_dir / "backups"
    assert path.name.startswith("orphans-") and path.name.endswith("Z.jsonl")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    got: dict[str, set[str]] = {}
    for line in lines:
        assert set(line) >= {"table", "key", "row"}
        got.setdefault(line["kind"], set()).add(str(line["key"]))
        if line["table"] not in ("redis", "dialogs_sqlite"):
            assert line["row"]["id"] == line["key"]
            datetime.fromisoformat(line["row"]["created_at"])  # ISO text
    assert got == {k: v for k, v in planted.expected.items() if v}
    assert len(lines) == sum(len(v) for v in planted.expected.values())
    comment = next(line for line in lines if line["table"] == "comments")
    assert comment["row"]["text"].startswith("orphan ") and comment["row"]["request_id"]
    redis_rows = {line["key"]: line["row"] for line in lines if line["table"] == "redis"}
    if redis_rows:
        applied = redis_rows[f"fsm:{GHOST_TG}:{GHOST_TG}:default:applied"]
        assert applied["type"] == "list"
        assert applied["value"] == ["41", "42", {"b64": "//4="}]
        assert 0 < applied["pttl"] <= 3_600_000
        assert redis_rows[f"fsm:{GHOST_TG}:{GHOST_TG}:default:data"] == {
            "type": "string",
            "value": '{"title": "Tap"}',
            "pttl": None,
        }


def recreate_parents(engine: Engine, planted: Planted) -> None:
    with Session(engine) as s:
        s.add(User(id=planted.ghost_id, telegram_id=GHOST_TG))
        s.flush()
        s.add(Request(id=planted.lost_request, author_id=planted.ghost_id, title="back",
                      description="d", location="Hall"))  # fmt: skip
        s.commit()


def run_cycle(
    engine: Engine,
    planted: Planted,
    client: Any | None,
    restart_idle: Callable[[], None],
    age: Callable[[], None] = lambda: None,
    after_scan: Callable[[], None] = lambda: None,
) -> None:
    """The whole story: scan, apply, scan, restore, restore again, apply twice. `age` makes
    the aged keys idle again (reading them for a snapshot is an access)."""
    before, keys_before = snapshot(engine), redis_snapshot(client) if client is not None else None
    age()
    assert orphans.scan() == as_found(planted.expected)
    after_scan()
    assert snapshot(engine) == before
    if client is not None:
        assert redis_snapshot(client) == keys_before
    age()

    calls: list[tuple[str, int]] = []
    path, deleted = orphans.apply(progress=lambda kind, n: calls.append((kind, n)))
    assert path is not None and path.exists()
    assert deleted == as_found(planted.expected)
    assert all(0 < n <= orphans.BATCH for _, n in calls)
    totals: Counter[str] = Counter()
    for kind, n in calls:
        totals[kind] += n
    assert totals == {k: len(v) for k, v in planted.expected.items() if v}
    check_backup(path, planted)
    assert not list(path.parent.glob("*.partial"))

    after = snapshot(engine)
    table_of = {rule.kind: rule.table.name for rule in orphans._RULES}
    for name in TABLES:  # exactly the orphans went
        gone = {r[0] for r in before[name]} - {r[0] for r in after[name]}
        wanted = {
            int(i) for kind, v in planted.expected.items() if table_of.get(kind) == name for i in v
        }
        assert gone == wanted, name
    if client is not None:
        left = set(redis_snapshot(client))
        assert left == set(keys_before or {}) - planted.expected["dialog_keys"]
    assert orphans.scan() == []

    recreate_parents(engine, planted)
    restart_idle()
    put = orphans.restore(path)
    assert put == {"skipped": planted.skipped} | {k: v for k, v in planted.restorable.items() if v}
    with Session(engine) as s:
        assert s.scalar(select(func.count()).where(Comment.request_id == planted.lost_request)) == 2
        back = s.scalar(select(Comment).where(Comment.request_id == planted.lost_request))
        assert back is not None and back.text.startswith("orphan ") and back.created_at is not None
    if client is not None:
        assert client.get(f"fsm:{GHOST_TG}:{GHOST_TG}:default:data") == b'{"title": "Tap"}'
        assert client.lrange(f"fsm:{GHOST_TG}:{GHOST_TG}:default:applied", 0, -1) == [
            b"41",
            b"42",
            b"\xff\xfe",
        ]
        assert 0 < client.pttl(f"fsm:{GHOST_TG}:{GHOST_TG}:default:applied") <= 3_600_000
        assert client.get(f"fsm:-100500:{STRANGER_TG}:default:data") is None
    total_lines = sum(len(v) for v in planted.expected.values())
    assert orphans.restore(path) == {"skipped": total_lines}  # nothing twice

    # Back as orphans: the erased user's pending rows and the stale drafts. Then nothing.
    path2, deleted2 = orphans.apply()
    assert path2 is not None and path2 != path
    assert {f.kind: f.count for f in deleted2} == {
        "outbox_of_erased_users": len(planted.expected["outbox_of_erased_users"]),
        "stale_draft_broadcasts": len(planted.expected["stale_draft_broadcasts"]),
    }
    assert orphans.apply() == (None, [])
    assert orphans.scan() == []


# --- SQLite + fakeredis ----------------------------------------------------------------------


@pytest.fixture
def fake_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = fakeredis.FakeServer()
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # never dialled: _redis is patched
    get_settings.cache_clear()
    monkeypatch.setattr(orphans, "_redis", lambda: fakeredis.FakeRedis(server=server))
    client = fakeredis.FakeRedis(server=server)
    yield client
    client.close()


def test_sqlite_fakeredis_cycle(
    db: Engine, fake_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = plant(db, n=3, big=1003, drop=drop_sqlite)  # 1003 comments: two delete batches
    plant_dialogs(fake_redis, planted)
    # fakeredis has no OBJECT IDLETIME: idle times come from the test.
    aged = set(planted.aged)
    monkeypatch.setattr(
        orphans,
        "_idle_seconds",
        lambda client, keys: [10 * 86400 if k in aged else 5 for k in keys],
    )
    run_cycle(db, planted, fake_redis, restart_idle=aged.clear)


def test_orphans_exist_only_without_the_pragma(db: Engine) -> None:
    """The reason this job exists: with foreign keys on, SQLite cascades, leaving none."""
    planted = plant(db, n=2, big=3, drop=lambda engine, stmts: None)
    with db.begin() as conn:
        conn.execute(text(f"DELETE FROM requests WHERE id = {planted.lost_request}"))
    left = {f.kind for f in orphans.scan()}
    assert "comments_without_request" not in left  # cascaded away, not orphaned


def test_idle_time_unknown_counts_as_fresh(db: Engine, fake_redis: Any) -> None:
    """fakeredis (like Redis under an LFU policy) answers no idle time: only users decide."""
    with Session(db) as s:
        s.add(User(telegram_id=1002))
        s.commit()
    fake_redis.set("fsm:1002:1002:default:state", "x")
    fake_redis.set(f"fsm:{STRANGER_TG}:{STRANGER_TG}:default:state", "x")
    assert orphans.scan() == [
        orphans.Found("dialog_keys", 1, [f"fsm:{STRANGER_TG}:{STRANGER_TG}:default:state"])
    ]


def test_a_key_written_after_the_backup_is_not_deleted(
    db: Engine, fake_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"fsm:{STRANGER_TG}:{STRANGER_TG}:default:data"
    fake_redis.set(key, "old")
    real = orphans._write_backup

    def backup_then_user_writes(*args: Any) -> int:
        written = real(*args)
        fake_redis.set(key, "new")  # the user came back between backup and delete
        return written

    monkeypatch.setattr(orphans, "_write_backup", backup_then_user_writes)
    path, deleted = orphans.apply()
    assert path is not None and deleted == []
    assert fake_redis.get(key) == b"new"


def test_sqlite_dialog_file(db: Engine) -> None:
    """Embedded defaults: VAR_DIR/dialogs.sqlite3, read with sqlite3; only users decide."""
    with Session(db) as s:
        s.add(User(telegram_id=1001))
        s.commit()
    path = get_settings().var_dir / "dialogs.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE dialogs (key TEXT PRIMARY KEY, state TEXT, data TEXT NOT NULL DEFAULT '{}')"
    )
    rows = [
        ("fsm:1001:1001:default", "NewRequest:title", "{}"),
        ("fsm:1001:1001:recent", None, '{"locations": ["Hall"]}'),
        (f"fsm:{GHOST_TG}:{GHOST_TG}:default", "NewRequest:title", '{"title": "x"}'),
        (f"fsm:{GHOST_TG}:{GHOST_TG}:recent", None, '{"locations": ["Flat 3"]}'),
        (f"fsm:-100:42:{STRANGER_TG}:default", None, "{}"),  # a forum topic: thread id 42
    ]
    conn.executemany("INSERT INTO dialogs VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    orphaned = sorted(r[0] for r in rows[2:])
    assert orphans.scan() == [orphans.Found("dialog_keys", 3, orphaned)]
    backup, deleted = orphans.apply()
    assert backup is not None and deleted == [orphans.Found("dialog_keys", 3, orphaned)]
    lines = [json.loads(line) for line in backup.read_text().splitlines()]
    assert {(x["table"], x["key"]) for x in lines} == {("dialogs_sqlite", k) for k in orphaned}
    by_key = {x["key"]: x["row"] for x in lines}
    assert by_key[rows[2][0]] == {"state": "NewRequest:title", "data": '{"title": "x"}'}
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT key FROM dialogs ORDER BY key")] == [
            "fsm:1001:1001:default",
            "fsm:1001:1001:recent",
        ]
    with Session(db) as s:
        s.add(User(telegram_id=GHOST_TG))
        s.commit()
    assert orphans.restore(backup) == {"skipped": 1, "dialogs_sqlite": 2}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM dialogs").fetchone() == (4,)
    assert orphans.scan() == []  # the stranger's key stayed in the backup only


def test_nothing_found_writes_no_backup(db: Engine) -> None:
    assert orphans.scan() == []
    assert orphans.apply() == (None, [])
    assert not list((get_settings().var_dir / "backups").glob("*"))


def test_restore_rebuilds_types_and_nulls_a_missing_author(db: Engine, tmp_path: Path) -> None:
    """Bytes from base64, datetimes from ISO text; a SET NULL reference to a missing user is
    restored as NULL (what the foreign key would have done), an owner is required."""
    at = now().replace(microsecond=0)
    with Session(db) as s:
        req = _request(0, "x")
        req.author_id = None
        s.add(req)
        s.commit()
        request_id = req.id
    lines = [
        {"table": "generated_files", "key": 5, "row": {"id": 5, "key": "k", "file_name": "a.png",
         "content": "AAH/", "telegram_file_id": None, "created_at": at.isoformat()}},
        {"table": "comments", "key": 7, "row": {"id": 7, "request_id": request_id, "author_id": 404,
         "text": "hi", "file_id": None, "created_at": at.isoformat()}},
        {"table": "comments", "key": 8, "row": {"id": 8, "request_id": 999, "author_id": None,
         "text": "lost", "file_id": None, "created_at": at.isoformat()}},
    ]  # fmt: skip
    backup = tmp_path / "b.jsonl"
    backup.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert orphans.restore(backup) == {"skipped": 1, "generated_files": 1, "comments": 1}
    with Session(db) as s:
        f = s.get(GeneratedFile, 5)
        assert f is not None and f.content == b"\x00\x01\xff"
        c = s.get(Comment, 7)
        assert (
            c is not None
            and c.author_id is None
            and c.created_at.replace(tzinfo=None) == at.replace(tzinfo=None)
        )


@pytest.mark.parametrize(
    ("key", "field", "parsed"),
    [
        ("fsm:5:7:default:state", True, (7, "default", "state")),
        ("fsm:-100:42:7:recent:data", True, (7, "recent", "data")),  # thread id
        ("fsm:123:5:7:default:applied", True, (7, "default", "applied")),  # bot id
        ("fsm:5:7:default", False, (7, "default", None)),
        ("fsm:x:default:state", True, None),
        ("other:5:7:default:state", True, None),
    ],
)
def test_parse_dialog_keys(key: str, field: bool, parsed: Any) -> None:
    assert orphans._parse_user(key, with_field=field) == parsed
