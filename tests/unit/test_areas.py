"""Areas: admins group places, staff subscribe, and new requests and unassigned comments go to
the staff of the place's area (or to all staff when nobody covers it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.routers.areas import parse_area
from core import commands as c
from core.callbacks import AreaCb
from core.domain import in_area
from core.menu import commands_for
from core.roles import Role
from core.texts import t
from db.models import Area, AreaStaff, ErasureAudit, User
from tests.support.follow_ups import run_follow_ups_inline
from tests.support.sandbox_api import SandboxAPI
from tests.unit.test_bot import _enqueued
from tests.unit.test_desk import ADMIN, OTHER, RESIDENT, STAFF, STAFF2, Desk, make_desk
from workers.privacy.export import write_export


@pytest.fixture(autouse=True)
def no_scheduling(monkeypatch: pytest.MonkeyPatch) -> None:
    run_follow_ups_inline(monkeypatch)


@pytest.fixture
def desk(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> Desk:
    return make_desk(db, sandbox, monkeypatch)


def _area_id(db: Engine, name: str) -> int:
    with Session(db) as s:
        return s.scalars(select(Area.id).where(func.lower(Area.name) == name.lower())).one()


def _new_notices(desk: Desk, user: int, title: str) -> int:
    return sum(1 for text in desk.texts(user) if title in text and "#" in text)


def test_in_area_matches_place_prefixes_in_any_case() -> None:
    assert in_area("B-12, 3rd floor", ["A-", "b-"])
    assert in_area("  Block A kitchen", ["block a"])
    assert not in_area("Room B-12", ["B-"])  # a prefix, not anywhere in the text
    assert not in_area("B-12", ["", "  "])  # empty places cover nothing


def test_bot_parses_area_definitions() -> None:
    assert parse_area(" Building A :  A- , Block A,, ") == ("Building A", ["A-", "Block A"])
    assert parse_area("Building A:") == ("Building A", [])
    assert parse_area("Building A") is None
    assert parse_area(": A-") is None


def test_a_new_request_goes_to_the_staff_of_its_area(desk: Desk, db: Engine) -> None:
    desk.run(c.DefineArea, ADMIN, name="Building A", places=["A-", "Block A"])
    desk.run(c.DefineArea, ADMIN, name="Building B", places=["B-"])
    assert desk.texts(ADMIN)[-1] == "Area Building B: B-."
    desk.run(c.ToggleArea, STAFF, area_id=_area_id(db, "building a"))

    desk.create(title="Leak in A", location="a-12")  # covered by STAFF only
    assert _new_notices(desk, STAFF, "Leak in A") == 1
    assert _new_notices(desk, STAFF2, "Leak in A") == 0
    assert _new_notices(desk, ADMIN, "Leak in A") == 0

    desk.create(title="Leak in B", location="B-3")  # an area nobody covers: everyone
    desk.create(title="Leak outside", location="Yard")  # no area: everyone
    for member in (STAFF, STAFF2, ADMIN):
        assert _new_notices(desk, member, "Leak in B") == 1
        assert _new_notices(desk, member, "Leak outside") == 1


def test_blocked_subscribers_leave_the_request_to_everyone(desk: Desk, db: Engine) -> None:
    desk.run(c.DefineArea, ADMIN, name="A", places=["A-"])
    desk.run(c.ToggleArea, STAFF, area_id=_area_id(db, "A"))
    with Session(db) as s:
        s.scalars(select(User).where(User.telegram_id == STAFF)).one().reachable = False
        s.commit()
    desk.create(title="Nobody reachable", location="A-1")
    assert _new_notices(desk, STAFF2, "Nobody reachable") == 1


def test_an_unassigned_comment_goes_to_the_area_staff(desk: Desk, db: Engine) -> None:
    desk.run(c.DefineArea, ADMIN, name="A", places=["A-"])
    desk.run(c.ToggleArea, STAFF2, area_id=_area_id(db, "A"))
    rid = desk.create(location="A-5")
    desk.run(c.AddComment, RESIDENT, request_id=rid, text="Still dark, please hurry")
    hurried = [u for u in (STAFF, STAFF2, ADMIN) if any("hurry" in x for x in desk.texts(u))]
    assert hurried == [STAFF2]


def test_areas_lists_and_toggles_in_place(desk: Desk, db: Engine) -> None:
    desk.run(c.DefineArea, ADMIN, name="Building A", places=["A-"])
    area = _area_id(db, "Building A")
    desk.run(c.ShowAreas, STAFF)
    listing = desk.last(STAFF)
    assert "▫ Building A: A- (nobody subscribed)" in listing["text"]
    assert desk.buttons(listing) == [AreaCb(id=area).pack()]
    assert "/area Name" not in listing["text"]  # the admins' line is for admins

    desk.run(c.ToggleArea, STAFF, area_id=area, edit_message_id=listing["message_id"])
    edited = desk.last(STAFF)
    assert edited["message_id"] == listing["message_id"]  # the same message, edited
    assert "✅ Building A: A- (1 staff)" in edited["text"]
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(AreaStaff)) == 1

    desk.run(c.ToggleArea, STAFF, area_id=area, edit_message_id=listing["message_id"])
    assert "▫ Building A" in desk.last(STAFF)["text"]
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(AreaStaff)) == 0

    desk.run(c.ShowAreas, ADMIN)
    assert t("areas.admin_usage", "en").replace("&lt;", "<") in desk.last(ADMIN)["text"]


def test_only_admins_define_and_only_staff_subscribe(desk: Desk, db: Engine) -> None:
    desk.run(c.DefineArea, STAFF, name="Mine", places=["M-"])
    assert desk.last(STAFF)["text"] == t("refused.not_allowed", "en")
    desk.run(c.DefineArea, ADMIN, name="A", places=["A-"])
    area = _area_id(db, "A")
    desk.run(c.ShowAreas, RESIDENT)
    desk.run(c.ToggleArea, OTHER, area_id=area)  # a forged button
    assert desk.last(RESIDENT)["text"] == t("refused.not_allowed", "en")
    assert desk.last(OTHER)["text"] == t("refused.not_allowed", "en")
    desk.run(c.ToggleArea, STAFF, area_id=10**9)
    assert desk.last(STAFF)["text"] == t("area.gone", "en")
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(Area)) == 1
        assert s.scalar(select(func.count()).select_from(AreaStaff)) == 0


def test_redefining_renames_replaces_and_deleting_unsubscribes(desk: Desk, db: Engine) -> None:
    desk.run(c.DefineArea, ADMIN, name="Building A", places=["A-"])
    area = _area_id(db, "Building A")
    desk.run(c.ToggleArea, STAFF, area_id=area)
    desk.run(c.DefineArea, ADMIN, name="BUILDING a", places=["A-", "Block A", "block a"])
    with Session(db) as s:
        row = s.get(Area, area)
        assert row is not None and (row.name, row.places) == ("BUILDING a", ["A-", "Block A"])
        assert s.scalar(select(func.count()).select_from(AreaStaff)) == 1
    desk.run(c.DefineArea, ADMIN, name="building A", places=[])
    assert desk.last(ADMIN)["text"].startswith("Area BUILDING a deleted")
    desk.run(c.DefineArea, ADMIN, name="Nowhere", places=[])
    assert desk.last(ADMIN)["text"] == "There is no area Nowhere."
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(Area)) == 0
        assert s.scalar(select(func.count()).select_from(AreaStaff)) == 0


def test_revoking_staff_drops_their_subscriptions(desk: Desk, db: Engine) -> None:
    desk.run(c.DefineArea, ADMIN, name="A", places=["A-"])
    desk.run(c.ToggleArea, STAFF, area_id=_area_id(db, "A"))
    desk.run(c.SetRole, ADMIN, target=str(STAFF), role=None)
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(AreaStaff)) == 0


def test_areas_are_bounded(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.limits.AREAS_MAX", 2)
    for name in ("A", "B", "C"):
        desk.run(c.DefineArea, ADMIN, name=name, places=[f"{name}-"])
    assert desk.last(ADMIN)["text"] == t("area.too_many", "en", max=2)


def test_staff_and_admins_see_areas_in_their_menus() -> None:
    assert "areas" in commands_for(Role.STAFF) and "area" not in commands_for(Role.STAFF)
    assert {"areas", "area"} <= set(commands_for(Role.ADMIN))
    assert "areas" not in commands_for(Role.RESIDENT)


async def test_the_bot_enqueues_areas_or_says_how(sandbox: SandboxAPI) -> None:
    long_name = "N" * 65
    texts = (
        "/areas",
        "/area Building A: A-, Block A",
        "/area Building A:",
        "/area Building A",
        f"/area {long_name}: x",
        "/area Many: " + ", ".join(str(n) for n in range(21)),
    )
    sent = await _enqueued(sandbox, 3004, texts)
    assert [
        (type(s).__name__, getattr(s, "name", None), getattr(s, "places", None)) for s in sent
    ] == [
        ("ShowAreas", None, None),
        ("DefineArea", "Building A", ["A-", "Block A"]),
        ("DefineArea", "Building A", []),
    ]
    told = [m["text"] for m in sandbox.messages(3004)]
    assert told[0].startswith("Usage: /area Name: place, place")
    assert told[1:] == [t("area.too_long", "en", name_max=64, places_max=20, place_max=200)] * 2


def test_the_export_lists_subscriptions_and_erasure_drops_them(
    desk: Desk, db: Engine, tmp_path: Path
) -> None:
    desk.run(c.DefineArea, ADMIN, name="Building A", places=["A-"])
    desk.run(c.DefineArea, ADMIN, name="Building B", places=["B-"])
    desk.run(c.ToggleArea, STAFF, area_id=_area_id(db, "Building B"))
    desk.run(c.ToggleArea, STAFF2, area_id=_area_id(db, "Building A"))
    out = tmp_path / "export.json"
    with Session(db) as s:
        staff = s.scalars(select(User).where(User.telegram_id == STAFF)).one()
        write_export(s, staff, out)
    assert [a["area"] for a in json.loads(out.read_text())["areas"]] == ["Building B"]

    desk.run(c.EraseMe, STAFF)
    with Session(db) as s:
        left = s.scalars(select(AreaStaff.user_id)).all()
        staff2 = s.scalars(select(User.id).where(User.telegram_id == STAFF2)).one()
        assert left == [staff2]  # theirs gone, the other's kept
        audit = s.scalars(select(ErasureAudit)).one()
        assert audit.counts["area_subscriptions"] == 1
