"""/export and /forget_me end to end: real bot and worker processes, the sandbox over HTTP,
PostgreSQL and Redis. After the erasure, the live schema and the whole Redis keyspace hold
nothing of the user; everyone else's data is whole."""

from __future__ import annotations

import json
import time

import redis
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from db.models import ErasureAudit, Request, User
from tests.e2e.test_lifecycle import create
from tests.support.chat import Chat
from tests.support.pii import scan_database, scan_redis
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI

ADMIN, STAFF, OTHER = 3001, 2001, 1002
ZQ = 987654321
PROFILE = {"username": "zqerased", "first_name": "Zeldarine", "last_name": "Quixotova"}
NEEDLES = [*PROFILE.values(), "xylophone-7731", "purple-wombat"]


def test_export_then_forget_me_leaves_nothing_behind(
    procs: Processes, live_sandbox: SandboxAPI, pg_url: str, redis_url: str
) -> None:
    procs.env["ADMIN_IDS"] = str(ADMIN)
    procs.worker("w1", "-c", "2")
    procs.start("bot", "bot").wait_for_log("bot.polling")
    zq, staff, admin, other = (
        Chat(live_sandbox, ZQ, **PROFILE),
        Chat(live_sandbox, STAFF),
        Chat(live_sandbox, ADMIN),
        Chat(live_sandbox, OTHER),
    )
    for chat in (zq, staff, admin, other):
        chat.say("/start")
        chat.wait("Hello")
    admin.say(f"/grant {STAFF} staff")
    admin.wait("is now staff")

    rid = create(zq, "xylophone-7731 fell", photos=1)
    staff.press(staff.wait(f"New request #{rid}"), "Accept")
    card = staff.wait(f"#{rid} xylophone-7731 fell")
    staff.press(card, "Comment")
    staff.wait("Your comment on request")
    staff.say("Zeldarine, I come at 5")
    zq.wait("I come at 5")
    theirs = create(other, "Other's door")

    zq.say("/export")
    zq.wait("Collecting your data")
    document = zq.wait(lambda m: bool(m["document"]))
    data = json.loads(live_sandbox.download(document["document"]))
    assert data["profile"]["username"] == "zqerased"
    assert [r["title"] for r in data["requests"]] == ["xylophone-7731 fell"]
    assert "Other's door" not in json.dumps(data)

    zq.say("/forget_me")
    zq.press(zq.wait("Erase your data?"), "🗑 Erase")
    zq.wait("Your data is erased")
    time.sleep(2)
    assert zq.all_texts()[-1].startswith("Your data is erased"), "a message after the last one"

    engine = create_engine(pg_url)
    client = redis.Redis.from_url(redis_url)
    try:
        # Rate-limit keys name chats and expire within seconds by design: wait them out.
        deadline = time.monotonic() + 15
        while (found := scan_redis(client, NEEDLES, ZQ)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert found == [], found
        found = scan_database(engine, NEEDLES, ZQ)
        assert found == [], "\n".join(found)
        with Session(engine) as s:
            kept = s.get(Request, rid)
            assert kept is not None and kept.status == "accepted" and kept.title == "[erased]"
            other_request = s.get(Request, theirs)
            assert other_request is not None and other_request.title == "Other's door"
            audit = s.scalars(select(ErasureAudit)).one()
            assert audit.reason == "self" and audit.counts["profile"] == 1
        # A later /start is a new person.
        zq.say("/start")
        zq.wait("Hello")
        with Session(engine) as s:
            fresh = s.scalars(select(User).where(User.telegram_id == ZQ)).one()
            assert fresh.erased_at is None
            assert not s.scalars(select(Request).where(Request.author_id == fresh.id)).all()
    finally:
        client.close()
        engine.dispose()
