"""The request desk's rules: priorities, statuses and the status machine, in one table.

Every change of a request's status goes through `decide`, which the worker calls; the buttons
the bot shows are a convenience, never the authority.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from core.roles import Role


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """Higher is more urgent (queues sort by it)."""
        return list(Priority).index(self)


class Status(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    REOPENED = "reopened"
    CLOSED = "closed"  # done and not reopened within REOPEN_WINDOW_DAYS (maintenance.retention)


OPEN_STATUSES = frozenset({Status.NEW, Status.ACCEPTED, Status.IN_PROGRESS, Status.REOPENED})
FINAL_STATUSES = frozenset({Status.REJECTED, Status.CANCELLED, Status.CLOSED})


class Action(StrEnum):
    ACCEPT = "accept"  # staff takes it, assigned to self
    ASSIGN = "assign"  # admin gives it to a staff member
    START = "start"
    DONE = "done"
    REJECT = "reject"  # reason required
    CANCEL = "cancel"  # by the author, while new
    REOPEN = "reopen"  # by the author, after done, within the window


class EventAction(StrEnum):
    """What a request's history records (`RequestEvent.action`): each transition by its
    Action's value, and the changes that are not transitions."""

    ACCEPT = Action.ACCEPT.value
    ASSIGN = Action.ASSIGN.value  # the note holds the assignee's internal id
    START = Action.START.value
    DONE = Action.DONE.value
    REJECT = Action.REJECT.value
    CANCEL = Action.CANCEL.value
    REOPEN = Action.REOPEN.value
    CREATED = "created"
    COMMENT = "comment"
    PRIORITY = "priority"  # from_status/to_status hold the old and new priority
    RATED = "rated"  # the note holds the rating
    UNDELIVERED = "undelivered"  # a notice did not arrive; the note holds the user's id
    ESCALATED = "escalated"  # past its SLA: from_status/to_status hold the old and new priority
    REPAIRED = "repaired"  # a consistency repair; the note says what was fixed
    CLOSE = "close"  # done, and the reopen window passed: closed by maintenance.retention

    @classmethod
    def of(cls, action: Action) -> EventAction:
        return cls(action.value)


class ReportKind(StrEnum):
    """Admins' reports: the periods a report covers."""

    TODAY = "today"  # on demand: since local midnight
    WEEK = "week"  # on demand: the last 7 days, today included
    MONTH = "month"  # on demand: the last 30 days, today included
    DAILY = "daily"  # scheduled: yesterday, whole
    WEEKLY = "weekly"  # scheduled: last Monday to Sunday, whole


OnDemandReport = Literal[ReportKind.TODAY, ReportKind.WEEK, ReportKind.MONTH]
ON_DEMAND_REPORTS: tuple[OnDemandReport, ...] = (
    ReportKind.TODAY,
    ReportKind.WEEK,
    ReportKind.MONTH,
)


class Who(StrEnum):
    """Who may take a transition (checked against the actor's role and relation)."""

    STAFF = "staff"  # any staff or admin
    ADMIN = "admin"
    ASSIGNEE = "assignee"  # the assignee, or an admin
    AUTHOR = "author"


@dataclass(frozen=True)
class Transition:
    to: Status
    who: Who
    needs_note: bool = False


# (from, action) -> transition. The single table of docs/design.md's status machine.
TRANSITIONS: dict[tuple[Status, Action], Transition] = {
    (Status.NEW, Action.ACCEPT): Transition(Status.ACCEPTED, Who.STAFF),
    (Status.REOPENED, Action.ACCEPT): Transition(Status.ACCEPTED, Who.STAFF),
    (Status.NEW, Action.ASSIGN): Transition(Status.ACCEPTED, Who.ADMIN),
    (Status.REOPENED, Action.ASSIGN): Transition(Status.ACCEPTED, Who.ADMIN),
    (Status.ACCEPTED, Action.ASSIGN): Transition(Status.ACCEPTED, Who.ADMIN),
    (Status.IN_PROGRESS, Action.ASSIGN): Transition(Status.IN_PROGRESS, Who.ADMIN),
    (Status.ACCEPTED, Action.START): Transition(Status.IN_PROGRESS, Who.ASSIGNEE),
    (Status.IN_PROGRESS, Action.DONE): Transition(Status.DONE, Who.ASSIGNEE),
    (Status.NEW, Action.REJECT): Transition(Status.REJECTED, Who.STAFF, needs_note=True),
    (Status.ACCEPTED, Action.REJECT): Transition(Status.REJECTED, Who.STAFF, needs_note=True),
    (Status.IN_PROGRESS, Action.REJECT): Transition(Status.REJECTED, Who.STAFF, needs_note=True),
    (Status.REOPENED, Action.REJECT): Transition(Status.REJECTED, Who.STAFF, needs_note=True),
    (Status.NEW, Action.CANCEL): Transition(Status.CANCELLED, Who.AUTHOR),
    (Status.DONE, Action.REOPEN): Transition(Status.REOPENED, Who.AUTHOR),
}


@dataclass(frozen=True)
class Viewer:
    """The actor as the worker knows them (from the database, never from the button)."""

    role: Role
    is_author: bool
    is_assignee: bool

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.STAFF, Role.ADMIN)


class Refused(Exception):
    """A transition that may not happen; `reason` is a text key for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def allowed(who: Who, viewer: Viewer) -> bool:
    if who is Who.STAFF:
        return viewer.is_staff
    if who is Who.ADMIN:
        return viewer.role is Role.ADMIN
    if who is Who.ASSIGNEE:
        return viewer.is_assignee or viewer.role is Role.ADMIN
    return viewer.is_author


def decide(
    status: Status,
    action: Action,
    viewer: Viewer,
    *,
    note: str | None = None,
    reopen_window_open: bool = True,
) -> Status:
    """The status after `action`, or Refused with why. Authorization first: a forged button
    for someone else's request learns nothing about its state."""
    whos = {t.who for (_, a), t in TRANSITIONS.items() if a is action}
    if not whos:
        raise Refused("refused.unknown_action")
    if not any(allowed(who, viewer) for who in whos):
        raise Refused("refused.not_allowed")
    current = TRANSITIONS.get((status, action))
    if current is None:
        raise Refused(f"refused.status.{status}")
    if not allowed(current.who, viewer):
        raise Refused("refused.not_allowed")
    if current.needs_note and not (note and note.strip()):
        raise Refused("refused.reason_required")
    if action is Action.REOPEN and not reopen_window_open:
        raise Refused("refused.reopen_window")
    return current.to


def available_actions(status: Status, viewer: Viewer) -> list[Action]:
    """The buttons to show this viewer: exactly what `decide` would allow (bar notes/windows)."""
    return [
        action
        for (s, action), transition in TRANSITIONS.items()
        if s is status and allowed(transition.who, viewer)
    ]


def can_view(viewer: Viewer) -> bool:
    """Residents see only their own requests; staff and admins see all."""
    return viewer.is_staff or viewer.is_author


def can_comment(status: Status, viewer: Viewer) -> bool:
    return can_view(viewer) and status not in FINAL_STATUSES


def can_rate(status: Status, viewer: Viewer) -> bool:
    return status in (Status.DONE, Status.CLOSED) and viewer.is_author


def can_change_priority(status: Status, viewer: Viewer) -> bool:
    return viewer.is_staff and status in OPEN_STATUSES


# What erased free text reads as (titles, places, descriptions, broadcasts): not a language.
ERASED_TEXT = "[erased]"


class ErasureReason(StrEnum):
    """Why an erasure ran: the user asked in the bot, or an admin ran it for them (the CLI)."""

    SELF = "self"
    ADMIN = "admin"


class ErasureMode(StrEnum):
    """ERASURE_MODE: keep the user's requests anonymous, or delete them entirely."""

    ANONYMIZE = "anonymize"
    DELETE = "delete"


class QueueOnly(StrEnum):
    """The /queue's narrowing buttons beside status, priority and place (short: they travel
    in a page button's 64 bytes)."""

    UNASSIGNED = "u"
    OVERDUE = "o"


def in_area(location: str, places: Iterable[str]) -> bool:
    """Whether a request's place belongs to an area: it starts with one of the area's places,
    compared case-insensitively ("B-12" is in an area of "b-")."""
    folded = location.casefold().strip()
    return any(p.strip() and folded.startswith(p.casefold().strip()) for p in places)
