"""Keyset pages of the desk's lists on SQLite: pressing ▶ from the first page to the last, then
◀ back to the first, meets every row of the list once, in its order, whatever the list and
its filters; a row deleted or changed between presses, or a forged button, shows a sensible
page. The presses are the ◀ ▶ buttons the worker draws (render.nav_row), as unpacked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, update
from sqlalchemy.orm import Session

from core.callbacks import ListCb, ListKind
from core.domain import OPEN_STATUSES, Priority, Status
from core.roles import Role
from core.texts import t
from db import requests as q
from db.models import Request, User
from workers.desk import render

SIZE = 3
BASE = datetime(2030, 1, 1, tzinfo=UTC)
AT = BASE + timedelta(days=1)
SLA = {"urgent": timedelta(hours=6), "high": timedelta(days=1), "normal": timedelta(days=3)}
SLA |= {"low": timedelta(days=5)}
STATUSES = [Status.NEW, Status.ACCEPTED, Status.IN_PROGRESS, Status.DONE, Status.NEW]
STATUSES += [Status.REJECTED, Status.NEW]

Fetch = Callable[[int, int | None], q.Page[Any]]


@dataclass(frozen=True)
class Seeded:
    author: int  # a resident with most of the requests
    staff: int  # the assignee of half of them
    requests: list[Request]  # as created (ids set), with the values the lists sort by


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with Session(db, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def seeded(session: Session) -> Seeded:
    """40 requests: priorities in runs of 6 and creation times in runs of 3 (so a run of 3 ties
    on both and only the id orders it), older as the id grows; residents, 8 staff members and
    an admin, and a staff member erased (no identity: not on the staff list)."""
    author, other = User(telegram_id=1, role=Role.RESIDENT.value), User(telegram_id=2)
    staff = [User(telegram_id=100 + i, role=Role.STAFF.value) for i in range(8)]
    admin, erased = User(telegram_id=200, role=Role.ADMIN.value), User(role=Role.STAFF.value)
    session.add_all([author, other, *staff, admin, erased])
    session.flush()
    requests = [
        Request(
            author_id=author.id if i % 3 else other.id,
            assignee_id=staff[0].id if i % 2 == 0 else None,
            title=f"Light {i}" if i % 2 else f"Leak {i}",
            description=f"Details {i}",
            location=f"Yard {i}" if i % 4 == 0 else f"Room {i}",
            priority=list(Priority)[(i // 6) % 4].value,
            status=STATUSES[i % len(STATUSES)].value,
            created_at=BASE - timedelta(hours=13 * (i // 3)),
        )
        for i in range(40)
    ]
    session.add_all(requests)
    session.commit()
    return Seeded(author.id, staff[0].id, requests)


def _ids(rows: list[Request], key: Callable[[Request], Any]) -> list[int]:
    return [r.id for r in sorted(rows, key=key)]


def _queue_key(overdue_first: bool) -> Callable[[Request], Any]:
    def key(r: Request) -> Any:
        late = r.status in OPEN_STATUSES and r.created_at < AT - SLA[r.priority]
        rest = (-Priority(r.priority).rank, r.created_at, r.id)
        return (not late, *rest) if overdue_first else rest

    return key


def _press(page: q.Page[Any], kind: ListKind, back: bool) -> ListCb | None:
    """The ◀ (`back`) or ▶ button the worker draws under `page`, unpacked as the bot does."""
    row = render.nav_row("en", current=ListCb(kind=kind, page=page.number), page=page)
    label = t("btn.prev" if back else "btn.next", "en")
    found = [ListCb.unpack(b["callback_data"]) for b in row if b["text"] == label]
    return found[0] if found else None


def _walk(fetch: Fetch, kind: ListKind = ListKind.MY) -> list[list[int]]:
    """The pages met pressing ▶ from the first page to the last, then ◀ back to the first:
    each checked to be the same on the way back, numbered in turn."""
    page = fetch(0, None)
    forward = [page]
    while (ahead := _press(page, kind, back=False)) is not None and len(forward) < 50:
        assert ahead.edge == page.rows[-1].id and ahead.page == page.number + 1
        page = fetch(ahead.page, ahead.edge)
        forward.append(page)
    backward = [page]
    while (back := _press(page, kind, back=True)) is not None and len(backward) < 50:
        assert back.edge == -page.rows[0].id and back.page == page.number - 1
        page = fetch(back.page, back.edge)
        backward.append(page)
    ids = [[r.id for r in p.rows] for p in forward]
    assert ids == [[r.id for r in p.rows] for p in reversed(backward)]
    assert [p.number for p in forward] == list(range(len(forward)))
    assert [p.number for p in backward] == list(reversed(range(len(forward))))
    assert all(len(p) == SIZE for p in ids[:-1]) and 0 < len(ids[-1]) <= SIZE
    assert {p.pages for p in forward} == {len(forward)}
    return ids


def _flat(pages: list[list[int]]) -> list[int]:
    return [i for page in pages for i in page]


def _queue(session: Session, **filters: Any) -> Fetch:
    status, place = filters.pop("status", None), filters.pop("location", None)
    return lambda page, edge: q.open_queue(session, status, place, page, SIZE, edge=edge, **filters)


QUEUES: dict[str, tuple[dict[str, Any], Callable[[Request], bool], bool]] = {
    # name: the filters, which requests they keep, whether overdue ones come first
    "all": ({"at": AT, "sla": SLA}, lambda r: True, True),
    "new": ({"status": Status.NEW, "at": AT, "sla": SLA}, lambda r: r.status == "new", True),
    "urgent": (
        {"priority": "urgent", "at": AT, "sla": SLA},
        lambda r: r.priority == "urgent",
        True,
    ),
    "unassigned": ({"unassigned": True}, lambda r: r.assignee_id is None, False),
    "overdue": (
        {"overdue": True, "at": AT, "sla": SLA},
        lambda r: r.created_at < AT - SLA[r.priority],
        True,
    ),
    "place": ({"location": "yard", "at": AT, "sla": SLA}, lambda r: "Yard" in r.location, True),
}


@pytest.mark.parametrize("name", list(QUEUES))
def test_the_queue_walks_every_request_once_in_order(
    session: Session, seeded: Seeded, name: str
) -> None:
    filters, kept, overdue_first = QUEUES[name]
    listed = [r for r in seeded.requests if r.status in OPEN_STATUSES and kept(r)]
    expected = _ids(listed, _queue_key(overdue_first))
    pages = _walk(_queue(session, **filters), ListKind.QUEUE)
    assert _flat(pages) == expected and len(pages) >= 2


def test_my_mine_find_and_staff_walk_every_row_once_in_order(
    session: Session, seeded: Seeded
) -> None:
    mine = [r for r in seeded.requests if r.author_id == seeded.author]
    assert _flat(
        _walk(lambda p, e: q.my_requests(session, seeded.author, p, SIZE, edge=e))
    ) == _ids(mine, lambda r: -r.id)

    assigned = [r for r in seeded.requests if r.assignee_id == seeded.staff]
    pages = _walk(lambda p, e: q.assigned_to(session, seeded.staff, p, SIZE, edge=e))
    assert _flat(pages) == _ids(assigned, lambda r: (r.status not in OPEN_STATUSES, -r.id))

    lit = [r for r in seeded.requests if "Light" in r.title]
    pages = _walk(lambda p, e: q.search_requests(session, "light", p, SIZE, edge=e))
    assert _flat(pages) == _ids(lit, lambda r: -r.id)

    staff = session.query(User.id).filter(User.role != "resident", User.telegram_id.is_not(None))
    pages = _walk(lambda p, e: q.staff_page(session, p, SIZE, edge=e), ListKind.STAFF)
    assert _flat(pages) == sorted(i for (i,) in staff) and len(pages) == 3


def _my(session: Session, seeded: Seeded) -> Fetch:
    return lambda page, edge: q.my_requests(session, seeded.author, page, SIZE, edge=edge)


def test_a_row_deleted_or_changed_between_presses(session: Session, seeded: Seeded) -> None:
    fetch = _queue(session, at=AT, sla=SLA)
    listed = _flat(_walk(fetch, ListKind.QUEUE))
    ahead = _press(fetch(0, None), ListKind.QUEUE, back=False)
    assert ahead is not None and ahead.edge == listed[2]
    # The next page's first request is deleted, and the boundary itself (overdue, as the
    # first page is) rejected: it leaves the queue, yet ▶ goes on right after its place.
    (boundary,) = [r for r in seeded.requests if r.id == ahead.edge]
    assert _queue_key(overdue_first=True)(boundary)[0] is False
    session.execute(delete(Request).where(Request.id == listed[3]))
    session.execute(update(Request).where(Request.id == ahead.edge).values(status="rejected"))
    session.commit()
    moved = fetch(ahead.page, ahead.edge)
    assert [r.id for r in moved.rows] == listed[4:7] and moved.has_prev and moved.number == 1
    # The boundary deleted: the first page, nothing to go on from.
    session.execute(delete(Request).where(Request.id == ahead.edge))
    session.commit()
    again = fetch(ahead.page, ahead.edge)
    assert [r.id for r in again.rows] == [*listed[:2], listed[4]]
    assert again.number == 0 and not again.has_prev


def test_back_to_a_start_that_moved_shows_the_first_page(session: Session, seeded: Seeded) -> None:
    fetch = _my(session, seeded)
    pages = _walk(fetch)
    third = fetch(2, -pages[3][0])  # ◀ from the fourth page: the third
    assert [r.id for r in third.rows] == pages[2] and third.has_prev and third.has_next
    # Rows before it deleted, so fewer than a page is left before it: ◀ is the first page,
    # a full one, without ◀.
    session.execute(delete(Request).where(Request.id.in_(pages[0] + pages[1][:2])))
    session.commit()
    back = fetch(1, -pages[2][0])
    assert [r.id for r in back.rows] == pages[1][2:] + pages[2][:2]
    assert back.number == 0 and not back.has_prev and back.has_next


def test_the_ends_come_from_the_rows_not_the_page_numbers(session: Session, seeded: Seeded) -> None:
    fetch = _my(session, seeded)
    pages = _walk(fetch)
    # A button claiming the last page before a row with more after it, and the first after
    # one with more before it: ◀ and ▶ all the same, the numbers clamped into range.
    late = fetch(10**4, -pages[2][0])
    assert [r.id for r in late.rows] == pages[1] and late.has_prev and late.has_next
    assert late.number == len(pages) - 1
    early = fetch(0, pages[1][-1])
    assert [r.id for r in early.rows] == pages[2] and early.has_prev and early.has_next
    # The last page is the last whatever its number says.
    last = fetch(0, pages[-2][-1])
    assert [r.id for r in last.rows] == pages[-1] and not last.has_next


@pytest.mark.parametrize("edge", [0, 2**70, -(2**70), 10**9, -(10**9)])
def test_a_forged_boundary_shows_the_first_page(
    session: Session, seeded: Seeded, edge: int
) -> None:
    fetch = _my(session, seeded)
    page = fetch(2, edge)
    assert (page.number, page.has_prev) == (0, False)
    assert [r.id for r in page.rows] == [r.id for r in fetch(0, None).rows]
