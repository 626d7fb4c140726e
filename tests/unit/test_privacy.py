"""Export and erasure on SQLite: what the export holds, field by field; what erasure leaves
(nothing of the user anywhere in the schema, others' data intact); twice; delete mode; a
command issued before the erasure and applied after; /start afresh."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core import commands as c
from core.clock import as_utc, now
from core.domain import Action
from core.roles import Role
from core.settings import get_settings
from core.texts import t
from db.models import (
    Attachment,
    Comment,
    DeadLetter,
    ErasureAudit,
    GeneratedFile,
    Outbox,
    Request,
    RequestEvent,
    User,
)
from tests.support.pii import scan_database
from tests.support.sandbox_api import SandboxAPI
from tests.unit.test_desk import ADMIN, OTHER, STAFF, Desk, make_desk, no_scheduling  # noqa: F401

ZQ = 987654321  # the user who exports and erases: an id found nowhere else
PROFILE = {"username": "zqerased", "first_name": "Zeldarine", "last_name": "Quixotova"}
SECRETS = ["xylophone-7731", "attic-of-grimwald", "purple-wombat", "FILE-ZQ-", "rejected-kumquat"]
NEEDLES = [*PROFILE.values(), *SECRETS]


@pytest.fixture
def desk(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> Desk:
    d = make_desk(db, sandbox, monkeypatch)
    sandbox._call("POST", "/sandbox/users", {"id": ZQ})
    zq(d, c.RegisterUser)
    return d


def zq(desk: Desk, model: type[c.Command], **fields: Any) -> None:
    desk.run(model, ZQ, profile=PROFILE, **fields)


def _seed(desk: Desk, var_dir: Path) -> dict[str, int]:
    """ZQ's requests, files, comments, rating and a broadcast-free life among other users who
    talk about them; other people's data beside it. Returns ids worth checking."""
    photos = [c.AttachmentIn(kind="photo", file_id=f"FILE-ZQ-{n}") for n in range(3)]
    zq(
        desk,
        c.CreateRequest,
        title="xylophone-7731 fell",
        description="In the attic-of-grimwald",
        location="attic-of-grimwald",
        attachments=photos,
    )
    first = _last_request(desk)
    zq(desk, c.CreateRequest, title="Leak", description="purple-wombat drips", location="Hall")
    second = _last_request(desk)
    desk.run(c.TransitionRequest, STAFF, request_id=first, action=Action.ACCEPT)
    desk.run(c.AddComment, STAFF, request_id=first, text="Zeldarine, I come at 5 (@zqerased)")
    zq(desk, c.AddComment, request_id=first, text="purple-wombat says thanks")
    desk.run(c.TransitionRequest, STAFF, request_id=first, action=Action.START)
    desk.run(c.TransitionRequest, STAFF, request_id=first, action=Action.DONE, note="Fixed")
    zq(desk, c.RateRequest, request_id=first, rating=5)
    zq(desk, c.TransitionRequest, request_id=second, action=Action.CANCEL)
    # Another resident's request, which ZQ (made staff for a while) comments on.
    desk.create(OTHER, title="Other's door", description="Other's words", location="Flat 7")
    others = _last_request(desk)
    desk.run(c.SetRole, ADMIN, target=str(ZQ), role=Role.STAFF)
    zq(desk, c.AddComment, request_id=others, text="purple-wombat will look")
    zq(
        desk,
        c.TransitionRequest,
        request_id=others,
        action=Action.REJECT,
        note="rejected-kumquat",
    )
    desk.run(c.SetRole, ADMIN, target=str(ZQ), role=None)
    # A dead letter of one of their commands, and their dialog keys beside someone else's.
    with Session(desk.engine) as s:
        s.add(
            DeadLetter(
                task_name="commands.add_comment",
                command={"actor": {"user_id": ZQ, "first_name": "Zeldarine"}, "text": "x"},
                error="boom",
                attempts=1,
            )
        )
        s.commit()
    var_dir.mkdir(parents=True, exist_ok=True)
    dialogs = sqlite3.connect(var_dir / "dialogs.sqlite3")
    dialogs.execute(
        "CREATE TABLE IF NOT EXISTS dialogs (key TEXT PRIMARY KEY, state TEXT, data TEXT)"
    )
    dialogs.executemany(
        "INSERT INTO dialogs VALUES (?, ?, ?)",
        [
            (f"fsm:{ZQ}:{ZQ}:default", "NewRequest:title", '{"title": "xylophone-7731"}'),
            (f"fsm:{ZQ}:{ZQ}:recent", None, '{"locations": ["attic-of-grimwald"]}'),
            (f"fsm:{OTHER}:{OTHER}:default", "NewRequest:title", '{"title": "Other draft"}'),
        ],
    )
    dialogs.commit()
    dialogs.close()
    return {"first": first, "second": second, "others": others}


def _last_request(desk: Desk) -> int:
    with Session(desk.engine) as s:
        return int(s.scalar(select(func.max(Request.id))) or 0)


def _export(desk: Desk) -> dict[str, Any]:
    zq(desk, c.ExportMyData)
    document = desk.sandbox.messages(ZQ)[-1]
    assert document["document"], document
    return json.loads(desk.sandbox.download(document["document"]))


def test_the_export_holds_what_the_database_holds_for_the_user(desk: Desk) -> None:
    ids = _seed(desk, get_settings().var_dir)
    data = _export(desk)
    with Session(desk.engine) as s:
        user = s.scalars(select(User).where(User.telegram_id == ZQ)).one()
        assert data["profile"] == {
            "telegram_id": ZQ,
            "username": "zqerased",
            "first_name": "Zeldarine",
            "last_name": "Quixotova",
            "language": user.language,
            "role": "resident",
            "reachable": True,
            "created_at": data["profile"]["created_at"],
            "updated_at": data["profile"]["updated_at"],
        }
        own = s.scalars(select(Request).where(Request.author_id == user.id).order_by(Request.id))
        exported = {r["id"]: r for r in data["requests"]}
        for request in own:
            got = exported.pop(request.id)
            for field in ("title", "description", "location", "priority", "status", "rating"):
                assert got[field] == getattr(request, field), field
            # Timestamps: ISO 8601 in UTC, to the microsecond.
            assert got["created_at"].endswith("+00:00")
            assert datetime.fromisoformat(got["created_at"]) == as_utc(request.created_at)
            files = s.scalars(select(Attachment).where(Attachment.request_id == request.id))
            assert [a["file_id"] for a in got["attachments"]] == [f.file_id for f in files]
            comments = s.scalars(
                select(Comment).where(Comment.request_id == request.id).order_by(Comment.id)
            ).all()
            assert [x["text"] for x in got["comments"]] == [x.text for x in comments]
            events = s.scalars(
                select(RequestEvent)
                .where(RequestEvent.request_id == request.id)
                .order_by(RequestEvent.id)
            ).all()
            assert [(e["action"], e["note"]) for e in got["history"]] == [
                (e.action, e.note) for e in events
            ]
        assert exported == {}, "requests of someone else in the export"
    first = next(r for r in data["requests"] if r["id"] == ids["first"])
    assert first["assignee"] == "u2001" and first["rating"] == 5
    assert [(x["author"], x["text"]) for x in first["comments"]][1:] == [
        ("you", "purple-wombat says thanks"),
        ("u2001", "Fixed"),
    ]
    assert [x["text"] for x in data["comments_on_other_requests"]] == ["purple-wombat will look"]
    assert [
        (e["request_id"], e["action"], e["note"]) for e in data["history_on_other_requests"]
    ] == [(ids["others"], "comment", None), (ids["others"], "reject", "rejected-kumquat")]
    # Made staff for a while, by the admin (named: staff are).
    assert [(r["from"], r["to"], r["by"]) for r in data["role_changes"]] == [
        ("resident", "staff", "u3001"),
        ("staff", "resident", "u3001"),
    ]
    # Nothing of the other resident's own data: their words and names stay out.
    text = json.dumps(data)
    assert "Other's door" not in text and "Flat 7" not in text and "u1002" not in text
    # The file and its outbox row are gone once sent (both hold all their data).
    with Session(desk.engine) as s:
        assert not s.scalars(select(Outbox).where(Outbox.method == "sendDocument")).all()


def test_erasure_leaves_nothing_of_the_user_and_keeps_everyone_else(desk: Desk) -> None:
    var_dir = get_settings().var_dir
    ids = _seed(desk, var_dir)
    _export(desk)
    zq(desk, c.EraseMe)
    # They are told, and that was the last message; its row is gone once sent.
    assert desk.texts(ZQ)[-1] == t("privacy.erased", "en")
    found = scan_database(desk.engine, NEEDLES, ZQ)
    assert found == [], "\n".join(found)
    dialogs = sqlite3.connect(var_dir / "dialogs.sqlite3")
    rows = dialogs.execute("SELECT key FROM dialogs").fetchall()
    dialogs.close()
    assert rows == [(f"fsm:{OTHER}:{OTHER}:default",)]
    with Session(desk.engine) as s:
        # What remains of their requests: the skeleton, linked to the anonymous profile.
        first = s.get(Request, ids["first"])
        assert first is not None and first.status == "done" and first.rating == 5
        assert (first.title, first.location) == ("[erased]", "[erased]")
        profile = s.get(User, first.author_id)
        assert profile is not None and profile.erased_at is not None
        assert (profile.telegram_id, profile.username, profile.first_name) == (None, None, None)
        # The staff comment stays, the name in it does not.
        staff_words = s.scalars(select(Comment.text).where(Comment.request_id == first.id)).all()
        assert staff_words == ["erased user, I come at 5 (erased user)", "Fixed"]
        # The other resident's request, and the staff's profile, are whole.
        others = s.get(Request, ids["others"])
        assert others is not None and others.title == "Other's door"
        assert others.status == "rejected"
        staff = s.scalars(select(User).where(User.telegram_id == STAFF)).one()
        assert staff.username == "u2001"
        audit = s.scalars(select(ErasureAudit)).one()
        assert audit.reason == "self" and audit.mode == "anonymize"
        assert audit.counts["profile"] == 1 and audit.counts["comments"] == 2
        assert audit.counts["requests"] == 2 and audit.counts["attachments"] == 3
        assert audit.counts["dialog_keys"] == 2 and audit.counts["role_changes"] == 2
    # Staff see the request as an erased user's.
    desk.run(c.ShowRequest, STAFF, request_id=ids["first"])
    assert "erased user" in desk.texts(STAFF)[-1]


def test_erasure_twice_finds_nothing_the_second_time(desk: Desk) -> None:
    _seed(desk, get_settings().var_dir)
    zq(desk, c.EraseMe)
    zq(desk, c.EraseMe)
    with Session(desk.engine) as s:
        first, second = s.scalars(select(ErasureAudit).order_by(ErasureAudit.id)).all()
        assert first.counts["profile"] == 1
        assert not any(second.counts.values()), second.counts
        assert (
            s.scalar(select(func.count()).select_from(User).where(User.erased_at.is_not(None))) == 1
        )
    assert scan_database(desk.engine, NEEDLES, ZQ) == []


def test_delete_mode_removes_their_requests_entirely(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _seed(desk, get_settings().var_dir)
    monkeypatch.setenv("ERASURE_MODE", "delete")
    get_settings.cache_clear()
    zq(desk, c.EraseMe)
    with Session(desk.engine) as s:
        assert s.get(Request, ids["first"]) is None and s.get(Request, ids["second"]) is None
        assert not s.scalars(select(Comment).where(Comment.request_id == ids["first"])).all()
        assert s.get(Request, ids["others"]) is not None
        audit = s.scalars(select(ErasureAudit)).one()
        assert audit.mode == "delete" and audit.counts["deleted_requests"] == 2
    assert scan_database(desk.engine, NEEDLES, ZQ) == []


def test_a_command_issued_before_the_erasure_brings_nothing_back(desk: Desk) -> None:
    _seed(desk, get_settings().var_dir)
    issued = now()
    zq(desk, c.EraseMe)
    told = len(desk.sandbox.messages(ZQ))
    # Sent before the erasure, applied after it: a comment and a new request.
    zq(desk, c.AddComment, request_id=1, text="purple-wombat late", issued_at=issued)
    zq(
        desk,
        c.CreateRequest,
        title="xylophone-7731 again",
        description="late",
        location="Hall",
        issued_at=issued,
    )
    assert scan_database(desk.engine, NEEDLES, ZQ) == []
    assert len(desk.sandbox.messages(ZQ)) == told, "a message after the last one"


def test_start_after_erasure_makes_a_fresh_profile(desk: Desk) -> None:
    _seed(desk, get_settings().var_dir)
    zq(desk, c.EraseMe)
    desk.run(c.RegisterUser, ZQ, profile={"username": "fresh_zq", "first_name": "New"})
    desk.run(c.ShowMyRequests, ZQ, profile={"username": "fresh_zq", "first_name": "New"})
    with Session(desk.engine) as s:
        fresh = s.scalars(select(User).where(User.telegram_id == ZQ)).one()
        assert fresh.role == "resident" and fresh.erased_at is None
        assert not s.scalars(select(Request).where(Request.author_id == fresh.id)).all()
    assert desk.texts(ZQ)[-1] == t("my.empty", "en")


def test_the_cli_exports_erases_and_lists_the_audit(
    desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zavhoz.cli import main

    ids = _seed(desk, get_settings().var_dir)
    target = tmp_path / "zq.json"
    assert main(["privacy", "export", str(ZQ), "--out", str(target)]) == 0
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["profile"]["username"] == "zqerased"
    assert {r["id"] for r in data["requests"]} == {ids["first"], ids["second"]}
    assert main(["privacy", "export", "123456"]) == 1
    assert "no user with Telegram id 123456" in capsys.readouterr().err

    assert main(["privacy", "erase", str(ZQ), "--yes"]) == 0
    assert "profile" in capsys.readouterr().out
    assert desk.texts(ZQ)[-1] == t("privacy.erased", "en")  # told, as by /forget_me
    assert scan_database(desk.engine, NEEDLES, ZQ) == []
    assert main(["privacy", "audit"]) == 0
    listing = capsys.readouterr().out
    assert "admin" in listing and "anonymize" in listing and "profile 1" in listing


def test_an_export_that_cannot_be_delivered_is_not_kept(desk: Desk) -> None:
    _seed(desk, get_settings().var_dir)
    desk.sandbox._call("POST", f"/sandbox/users/{ZQ}/block", {})
    zq(desk, c.ExportMyData)
    with Session(desk.engine) as s:
        assert not s.scalars(select(Outbox).where(Outbox.method == "sendDocument")).all()
        assert not s.scalars(select(GeneratedFile)).all()


def test_step_one_unlinks_at_once_and_a_lost_scrub_is_resumed_by_the_relay(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One row a step: a scrub task lost after a few steps (its worker died) leaves durable
    progress; the relay resumes it once it has stalled; the user is told once, at the end."""
    from workers import maintenance_tasks, privacy_tasks
    from workers.privacy import erasure

    ids = _seed(desk, get_settings().var_dir)
    monkeypatch.setenv("ERASURE_STEP_REQUESTS", "1")
    monkeypatch.setenv("ERASURE_STEP_ROWS", "1")
    get_settings.cache_clear()
    lost: list[Any] = []
    monkeypatch.setattr(
        "workers.command_tasks.send_signatures",
        lambda sigs: lost.extend(s for s in sigs if s is not None),
    )
    told_before = desk.texts(ZQ).count(t("privacy.erased", "en"))
    zq(desk, c.EraseMe)
    (scrub,) = [s for s in lost if s.task == erasure.SCRUB_TASK]
    audit_id = scrub.args[0]
    with Session(desk.engine) as s:
        # Nothing identifies them any more, though their requests' words are still there.
        assert s.scalars(select(User).where(User.telegram_id == ZQ)).first() is None
        assert not s.scalars(select(Outbox).where(Outbox.chat_id == ZQ)).all()
        first = s.get(Request, ids["first"])
        assert first is not None and first.title == "xylophone-7731 fell"
        audit = s.get(ErasureAudit, audit_id)
        assert audit is not None and audit.finished_at is None and audit.erased_at is not None
    for _ in range(3):  # a worker's first steps, then it died
        with Session(desk.engine) as s, s.begin():
            assert not erasure.scrub_step(s, audit_id).done
    resumed: list[Any] = []
    monkeypatch.setattr(
        maintenance_tasks, "send_signatures", lambda sigs: resumed.extend(s for s in sigs if s)
    )
    maintenance_tasks.relay_outbox()
    assert not [s for s in resumed if s.task == erasure.SCRUB_TASK]  # still progressing
    with Session(desk.engine) as s, s.begin():
        audit = s.get(ErasureAudit, audit_id)
        assert audit is not None and audit.progress_at is not None
        audit.progress_at -= erasure.STALLED_AFTER
    maintenance_tasks.relay_outbox()
    (again,) = [s for s in resumed if s.task == erasure.SCRUB_TASK]
    assert privacy_tasks.scrub_until_done(again.args[0], budget_s=None)
    assert desk.texts(ZQ).count(t("privacy.erased", "en")) == told_before + 1
    assert desk.texts(ZQ)[-1] == t("privacy.erased", "en")
    assert scan_database(desk.engine, NEEDLES, ZQ) == []
    with Session(desk.engine) as s:
        audit = s.get(ErasureAudit, audit_id)
        assert audit is not None and audit.finished_at is not None and audit.pending is None
        assert audit.counts["comments"] == 2 and audit.counts["requests"] == 2
    # Steps after the end change nothing and tell no one again.
    assert privacy_tasks.scrub_until_done(audit_id, budget_s=None)
    assert desk.texts(ZQ).count(t("privacy.erased", "en")) == told_before + 1


def test_a_notice_written_by_a_command_racing_the_erasure_is_never_sent(desk: Desk) -> None:
    """A staff command that read the user's chat id before the erasure and committed after it
    leaves a notice to them: the sender drops it."""
    from workers import outbox

    _seed(desk, get_settings().var_dir)
    with Session(desk.engine) as s:
        uid = s.scalars(select(User.id).where(User.telegram_id == ZQ)).one()
    zq(desk, c.EraseMe)
    sent = len(desk.sandbox.messages(ZQ))
    with Session(desk.engine) as s, s.begin():
        late = Outbox(
            dedupe_key="late-notice",
            chat_id=ZQ,
            user_id=uid,
            method="sendMessage",
            payload={"chat_id": ZQ, "text": "Zeldarine, your request #1 was accepted"},
            state="pending",
            attempts=0,
            next_attempt_at=now(),
        )
        s.add(late)
        s.flush()
        late_id = late.id
    report = outbox.deliver([late_id])
    assert report.counts == {"skipped": 1}
    assert len(desk.sandbox.messages(ZQ)) == sent
    with Session(desk.engine) as s:
        assert s.get(Outbox, late_id) is None
