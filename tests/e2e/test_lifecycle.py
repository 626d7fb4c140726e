"""The request desk end to end: real bot and worker processes, the sandbox over HTTP,
PostgreSQL and Redis. Users only type and press buttons, as people would."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from db.models import Attachment, Request
from tests.support.chat import Chat
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI

ADMIN, STAFF, STAFF2, RESIDENT, OTHER = 3001, 2001, 2002, 1001, 1002
CREATED = re.compile(r"Request #(\d+) created\.")


@pytest.fixture
def desk(procs: Processes, live_sandbox: SandboxAPI) -> dict[int, Chat]:
    procs.env["ADMIN_IDS"] = str(ADMIN)
    procs.worker("w1", "-c", "2")
    procs.worker("w2", "-c", "2")
    procs.start("bot", "bot").wait_for_log("bot.polling")
    chats = {u: Chat(live_sandbox, u) for u in (ADMIN, STAFF, STAFF2, RESIDENT, OTHER)}
    for _user, chat in chats.items():
        chat.say("/start")
        chat.wait("Hello")
    admin = chats[ADMIN]
    admin.say(f"/grant {STAFF} staff")
    admin.wait("is now staff")
    admin.say("/grant @u2002 staff")
    admin.wait("@u2002 is now staff")
    return chats


def create(chat: Chat, title: str, *, photos: int = 0, priority: str = "Normal") -> int:
    chat.say("/new")
    chat.wait("What is the problem?")
    chat.say(title)
    chat.wait("Describe the problem")
    chat.say(f"Details of {title}")
    chat.wait("Where is it?")
    chat.say("Entrance 2, floor 3")
    chat.press(chat.wait("How urgent"), priority)
    ask_files = chat.wait("Add photos")
    if photos:
        chat.send_photos(photos, album=f"album-{title}")
        chat.press(chat.wait(f"Attached: {photos} of 10"), "Continue")
    else:
        chat.press(ask_files, "Skip")
    chat.press(chat.wait("Check your request"), "Submit")
    created = chat.wait(lambda m: CREATED.match(m.get("text") or "") is not None)
    return int(CREATED.match(created["text"]).group(1))  # type: ignore[union-attr]


def test_full_lifecycle(desk: dict[int, Chat], pg_url: str) -> None:
    resident, staff, staff2 = desk[RESIDENT], desk[STAFF], desk[STAFF2]

    rid = create(resident, "Broken light", photos=2, priority="High")
    notice = staff.wait(f"New request #{rid}")
    assert "Broken light" in notice["text"] and "high" in notice["text"]
    staff2.wait(f"New request #{rid}")
    staff.press(notice, "Accept")
    card = staff.wait(f"#{rid} Broken light")
    resident.wait(f"Request #{rid} «Broken light» is now 👷 accepted (by @u2001)")
    staff.press(card, "Start")
    card = staff.wait(
        lambda m: f"#{rid} Broken light" in (m["text"] or "") and "in progress" in m["text"]
    )
    staff.press(card, "Done")
    staff.wait("closing comment")
    staff.say("Replaced the bulb")
    done = resident.wait("Closing note: Replaced the bulb")
    resident.press(done, "★★★★★")
    resident.wait("Thank you! Request #")

    engine = create_engine(pg_url)
    with Session(engine) as s:
        request = s.get(Request, rid)
        assert request is not None
        assert (request.status, request.priority, request.rating) == ("done", "high", 5)
        assert len(s.scalars(select(Attachment).where(Attachment.request_id == rid)).all()) == 2

    # Reopened by the author from /my; the card shows it.
    resident.say("/my")
    listing = resident.wait("Your requests")
    resident.press(listing, f"#{rid}")
    resident.press(resident.wait(f"#{rid} Broken light"), "Reopen")
    staff.wait(f"Request #{rid} «Broken light» is now ↩ reopened (by @u1001)")

    # Rejected with a reason, shown to the author.
    rid2 = create(resident, "Noisy neighbours")
    staff.press(staff.wait(f"New request #{rid2}"), "Reject")
    staff.wait("Why is request")
    staff.say("Not a maintenance issue")
    resident.wait("Reason: Not a maintenance issue")

    # Cancelled by the author while new.
    rid3 = create(resident, "Dripping tap")
    resident.say("/my")
    resident.press(resident.wait("Your requests"), f"#{rid3}")
    resident.press(resident.wait(f"#{rid3} Dripping tap"), "Cancel request")
    resident.wait(f"Request #{rid3}: ✖ cancelled")

    with Session(engine) as s:
        statuses = dict(s.execute(select(Request.id, Request.status)).all())
    engine.dispose()
    assert statuses == {rid: "reopened", rid2: "rejected", rid3: "cancelled"}

    # The queue shows what the database holds: only the reopened one is open.
    staff.say("/queue")
    queue = staff.wait("Queue")
    assert [b["text"].split(" ·")[0] for b in Chat.buttons(queue) if b["text"].startswith("#")] == [
        f"#{rid}"
    ]


def test_concurrent_accept_one_wins(desk: dict[int, Chat]) -> None:
    resident, staff, staff2 = desk[RESIDENT], desk[STAFF], desk[STAFF2]
    rid = create(resident, "Lift stuck")
    n1, n2 = staff.wait(f"New request #{rid}"), staff2.wait(f"New request #{rid}")
    staff.press(n1, "Accept")
    staff2.press(n2, "Accept")  # both commands are in the broker at once; two workers take them
    outcomes = []
    for chat in (staff, staff2):
        got = chat.wait(
            lambda m: (
                f"#{rid}" in (m["text"] or "")
                and ("accepted." in m["text"] or "already taken" in m["text"])
            )
        )
        outcomes.append(got["text"])
    assert sorted("already taken" in o for o in outcomes) == [False, True]
    taker = "@u2001" if "already taken" in outcomes[1] else "@u2002"
    assert any(f"already taken by {taker}" in o for o in outcomes)


def test_forged_callbacks_and_bad_inputs(desk: dict[int, Chat], pg_url: str) -> None:
    resident, other, staff = desk[RESIDENT], desk[OTHER], desk[STAFF]
    rid = create(resident, "Broken window")
    # Another resident forges Accept and Cancel for someone else's request.
    anchor = other.api.messages(OTHER)[-1]
    other.forge(anchor, f"rq:accept:{rid}:")
    other.wait("not allowed")
    other.forge(anchor, f"rq:cancel:{rid}:")
    other.wait("not allowed")
    other.forge(anchor, f"rq:open:{rid}:")
    other.wait("not allowed")
    other.forge(anchor, "rq:rate:1:9")  # malformed: refused by the bot, never enqueued
    staff.say("/queue")
    assert f"#{rid}" in str(Chat.buttons(staff.wait("Queue")))  # still new, still open

    # Bad inputs in the dialog: each explained, the question asked again, nothing stored.
    resident.say("/new")
    resident.wait("What is the problem?")
    for send, explanation, question in BAD_INPUTS:
        send(resident)
        answer = resident.wait(explanation)
        assert question in answer["text"], answer["text"]
    resident.say("/cancel")
    resident.wait("Cancelled")
    engine = create_engine(pg_url)
    with Session(engine) as s:
        assert s.scalars(select(Request.title)).all() == ["Broken window"]
    engine.dispose()


MB = 1024 * 1024


def _document(size: int) -> Callable[[Chat], None]:
    def send(chat: Chat) -> None:
        chat.api._call(
            "POST",
            "/sandbox/documents",
            {
                "user_id": chat.user_id,
                "file_name": "scan.pdf",
                "file_size": size,
            },
        )

    return send


# (what the user does, the explanation, the question asked again), walking through the steps.
BAD_INPUTS: list[tuple[Callable[[Chat], None], str, str]] = [
    (lambda c: c.say("x" * 101), "too long: 101 characters", "What is the problem?"),
    (lambda c: c.say("   "), "The title is empty", "What is the problem?"),
    (lambda c: c.send_photos(1), "I need a text message", "What is the problem?"),
    (lambda c: c.say("Broken door"), "Describe the problem", "Describe the problem"),
    (lambda c: c.say("y" * 2001), "too long: 2001 characters", "Describe the problem"),
    (lambda c: c.say("It does not close"), "Where is it?", "Where is it?"),
    (lambda c: c.say("z" * 201), "too long: 201 characters", "Where is it?"),
    (lambda c: c.say("Hall"), "How urgent", "How urgent"),
    (lambda c: c.say("High"), "choose the priority with one of the buttons", "How urgent"),
    (lambda c: c.press(c.api.messages(c.user_id)[-1], "Low"), "Add photos", "Add photos"),
    (lambda c: c.say("here is a photo"), "Here I take photos and documents", "Skip"),
    (_document(21 * MB), "it is 21.0 MB, the limit is 20 MB", "Add photos"),
]


def test_broadcast_from_the_bot(desk: dict[int, Chat]) -> None:
    admin, resident, other, staff = desk[ADMIN], desk[RESIDENT], desk[OTHER], desk[STAFF]
    resident.say("/broadcast")  # refused at once, not after walking through the dialog
    refusal = resident.wait("not allowed")
    resident.forge(refusal, "bc:aud:0:everyone")  # a forged audience gets as far as the text
    resident.wait("Send the message")
    resident.say("I am not an admin")
    resident.wait("not allowed")

    admin.say("/broadcast")
    admin.press(admin.wait("Who should get the message?"), "Residents")
    admin.wait("Send the message for Residents")
    admin.say("Water is off tomorrow 10:00-12:00 <sorry> & thanks")
    preview = admin.wait("Send this to 2 recipients (Residents)?")
    admin.press(preview, "Send")
    for chat in (resident, other):
        chat.wait("Water is off tomorrow 10:00-12:00 <sorry> & thanks")
    admin.wait(lambda m: "finished: 2 sent, 0 failed of 2" in (m["text"] or ""))
    assert not any("Water is off" in text for text in staff.all_texts())


def test_report_from_the_bot(desk: dict[int, Chat]) -> None:
    admin, staff, resident = desk[ADMIN], desk[STAFF], desk[RESIDENT]
    number = create(resident, "Report me")
    resident.say("/report")
    refusal = resident.wait("not allowed")
    staff.say("/report week")
    staff.wait("not allowed")
    admin.say("/report yearly")
    admin.wait("Which report?")  # the bot explains; nothing is enqueued

    admin.say("/report")
    summary = admin.wait(lambda m: (m["text"] or "").startswith("📊 Report for"))
    assert "Created 1" in summary["text"]
    admin.wait(lambda m: bool(m["photo"]))
    csv = admin.wait(lambda m: bool(m["document"]))
    rows = admin.api.download(csv["document"]).decode().splitlines()
    assert rows[0].startswith("id,created,status") and rows[1].startswith(f"{number},")
    admin.press(summary, "Month")  # the summary's buttons ask for another period
    admin.wait("Preparing the report for")
    assert sum(1 for m in admin.api.messages(ADMIN) if m["document"]) >= 1
    resident.forge(refusal, "rp:month")  # a resident's forged press is refused by the worker
    resident.wait("not allowed")
