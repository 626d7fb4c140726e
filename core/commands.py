"""The bot-worker contract: commands are pydantic models sent as a task's JSON kwargs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from core import limits
from core.domain import Action, OnDemandReport, Priority, QueueOnly, ReportKind, Status
from core.roles import Audience, Role
from core.user_input import (
    DB_ID_LIMIT,
    PAGE_LIMIT,
    TELEGRAM_ID_LIMIT,
    clean_text,
    normalize,
    parse_user_target,
)

SCHEMA_VERSION = 1


def idempotency_key(update_id: int) -> str:
    # Telegram's update ids are unique per bot, so they identify a user action.
    return f"tg-update:{update_id}"


# Whatever sent a command, the worker gets clean text (see core.user_input) and ids in range.


def _normalized(value: object) -> object:
    return normalize(value) if isinstance(value, str) else value


def _normalized_or_none(value: object) -> object:
    return (normalize(value) or None) if isinstance(value, str) else value


def _cleaned(value: object) -> object:
    return clean_text(value) if isinstance(value, str) else value


def _user_target(value: str) -> str:
    target = parse_user_target(value)
    if target is None:
        raise ValueError("not a Telegram user id or @username")
    return target


Cleaned = Annotated[str, BeforeValidator(_cleaned)]
# Required free text: nothing visible left counts as empty and fails min_length.
_Visible = BeforeValidator(_normalized)
TelegramUserId = Annotated[int, Field(gt=0, lt=TELEGRAM_ID_LIMIT)]
Page = Annotated[int, Field(ge=0, lt=PAGE_LIMIT)]
# Which page of a list, by a row of the page shown (core.callbacks.ListCb.edge).
Edge = Annotated[int, Field(gt=-DB_ID_LIMIT, lt=DB_ID_LIMIT)] | None
RequestId = Annotated[int, Field(gt=0, lt=DB_ID_LIMIT)]


class Actor(BaseModel):
    """Who acts, as Telegram sent it (not trusted for authorization: the worker checks roles)."""

    model_config = ConfigDict(frozen=True)

    user_id: TelegramUserId
    chat_id: int = Field(gt=-TELEGRAM_ID_LIMIT, lt=TELEGRAM_ID_LIMIT)
    language: str | None = None
    username: str | None = None
    first_name: Cleaned | None = None
    last_name: Cleaned | None = None


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    task_name: ClassVar[str]

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    idempotency_key: str = Field(min_length=1, max_length=200)
    actor: Actor
    # When the bot received the update: a command issued before its user was erased must not
    # bring anything of them back when it is applied after (see db.users.upsert_user).
    issued_at: datetime | None = None
    # Which Telegram message or button press it came from ("m:<chat>:<message id>",
    # "c:<callback id>"): part of the fingerprint, so an update id Telegram numbers again
    # (after a quiet week) is a new action even when it says the same thing (/my, /start).
    origin: str | None = Field(default=None, max_length=100)

    def to_kwargs(self) -> dict[str, object]:
        return {"command": self.model_dump(mode="json", by_alias=True)}


class RegisterUser(Command):
    """/start: create or refresh the user's profile and answer with the main menu."""

    task_name = "commands.register_user"
    kind: Literal["register_user"] = "register_user"


# --- The request desk -----------------------------------------------------------------------


class AttachmentIn(BaseModel):
    """A file the user sent, as Telegram described it (the bytes stay at Telegram)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["photo", "document"]
    file_id: str = Field(min_length=1, max_length=255)
    file_unique_id: str | None = Field(default=None, max_length=64)
    file_name: Cleaned | None = Field(default=None, max_length=255)
    mime_type: Cleaned | None = Field(default=None, max_length=128)
    size: int | None = Field(default=None, ge=0, le=limits.MAX_FILE_BYTES)


Title = Annotated[str, _Visible, StringConstraints(min_length=1, max_length=limits.TITLE_MAX)]
Description = Annotated[
    str, _Visible, StringConstraints(min_length=1, max_length=limits.DESCRIPTION_MAX)
]
Location = Annotated[str, _Visible, StringConstraints(min_length=1, max_length=limits.LOCATION_MAX)]
CommentBody = Annotated[str, _Visible, StringConstraints(max_length=limits.COMMENT_MAX)]
# Optional free text: nothing visible left is None (a blank reject reason is no reason).
Note = Annotated[
    Annotated[str, StringConstraints(max_length=limits.REASON_MAX)] | None,
    BeforeValidator(_normalized_or_none),
]
LocationFilter = Annotated[
    Annotated[str, StringConstraints(max_length=limits.LOCATION_MAX)] | None,
    BeforeValidator(_normalized_or_none),
]


class CreateRequest(Command):
    task_name = "commands.create_request"
    kind: Literal["create_request"] = "create_request"
    title: Title
    description: Description
    location: Location
    priority: Priority = Priority.NORMAL
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=limits.MAX_ATTACHMENTS)


class ShowMyRequests(Command):
    task_name = "commands.show_my_requests"
    kind: Literal["show_my_requests"] = "show_my_requests"
    page: Page = 0
    edge: Edge = None
    edit_message_id: int | None = None  # a page button edits the list in place


class ShowMine(Command):
    """/mine (staff): the requests assigned to the actor, open ones first."""

    task_name = "commands.show_mine"
    kind: Literal["show_mine"] = "show_mine"
    page: Page = 0
    edge: Edge = None
    edit_message_id: int | None = None


class ShowQueue(Command):
    task_name = "commands.show_queue"
    kind: Literal["show_queue"] = "show_queue"
    page: Page = 0
    edge: Edge = None
    status: Status | None = None
    location: LocationFilter = None
    priority: Priority | None = None
    only: QueueOnly | None = None
    edit_message_id: int | None = None


# What /find looks for (the worker searches for as much of it as a page button can carry).
SearchQuery = Annotated[
    str, _Visible, StringConstraints(min_length=1, max_length=limits.SEARCH_MAX)
]


class FindRequests(Command):
    """/find <text> (staff): requests whose title, description, place or comments hold the
    words, newest first."""

    task_name = "commands.find_requests"
    kind: Literal["find_requests"] = "find_requests"
    query: SearchQuery
    page: Page = 0
    edge: Edge = None
    edit_message_id: int | None = None


class ShowRequest(Command):
    task_name = "commands.show_request"
    kind: Literal["show_request"] = "show_request"
    request_id: RequestId


class TransitionRequest(Command):
    task_name = "commands.transition_request"
    kind: Literal["transition_request"] = "transition_request"
    request_id: RequestId
    action: Action
    note: Note = None
    file_id: str | None = Field(default=None, max_length=255)  # a closing photo
    assignee: TelegramUserId | None = None  # for ASSIGN


class ShowAssignees(Command):
    """An admin pressed Assign: reply with the staff to choose from."""

    task_name = "commands.show_assignees"
    kind: Literal["show_assignees"] = "show_assignees"
    request_id: RequestId


class AddComment(Command):
    """A comment: words, files added to the request, or both."""

    task_name = "commands.add_comment"
    kind: Literal["add_comment"] = "add_comment"
    request_id: RequestId
    text: CommentBody = ""
    file_id: str | None = Field(default=None, max_length=255)  # unused since attachments came
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=limits.MAX_ATTACHMENTS)

    @model_validator(mode="after")
    def _says_something(self) -> AddComment:
        if not self.text and not self.attachments and not self.file_id:
            raise ValueError("a comment needs words or files")
        return self


class ChangePriority(Command):
    task_name = "commands.change_priority"
    kind: Literal["change_priority"] = "change_priority"
    request_id: RequestId
    priority: Priority


class RateRequest(Command):
    task_name = "commands.rate_request"
    kind: Literal["rate_request"] = "rate_request"
    request_id: RequestId
    rating: int = Field(ge=1, le=5)


class SetRole(Command):
    """/grant and /revoke. `target` is a Telegram id or an @username; role None revokes."""

    task_name = "commands.set_role"
    kind: Literal["set_role"] = "set_role"
    target: Annotated[str, AfterValidator(_user_target)]
    role: Role | None = None


class ListStaff(Command):
    task_name = "commands.list_staff"
    kind: Literal["list_staff"] = "list_staff"
    page: Page = 0
    edge: Edge = None
    edit_message_id: int | None = None


# --- Areas -------------------------------------------------------------------------------------

AreaName = Annotated[
    str, _Visible, StringConstraints(min_length=1, max_length=limits.AREA_NAME_MAX)
]
AreaPlace = Annotated[
    str, _Visible, StringConstraints(min_length=1, max_length=limits.LOCATION_MAX)
]


class ShowAreas(Command):
    """/areas (staff): every area with its places; a button each subscribes or unsubscribes."""

    task_name = "commands.show_areas"
    kind: Literal["show_areas"] = "show_areas"
    edit_message_id: int | None = None


class ToggleArea(Command):
    task_name = "commands.toggle_area"
    kind: Literal["toggle_area"] = "toggle_area"
    area_id: RequestId
    edit_message_id: int | None = None


class DefineArea(Command):
    """/area Name: place, place (admins): make or replace an area; no places deletes it."""

    task_name = "commands.define_area"
    kind: Literal["define_area"] = "define_area"
    name: AreaName
    places: list[AreaPlace] = Field(default_factory=list, max_length=limits.AREA_PLACES_MAX)


# --- Broadcasts -------------------------------------------------------------------------------

BroadcastText = Annotated[
    str, _Visible, StringConstraints(min_length=1, max_length=limits.BROADCAST_MAX)
]


class BeginBroadcast(Command):
    """/broadcast: an admin is asked for the audience; anyone else is refused at once."""

    task_name = "commands.begin_broadcast"
    kind: Literal["begin_broadcast"] = "begin_broadcast"


class StartBroadcast(Command):
    """An admin's message to many: the worker counts the recipients and asks to confirm."""

    task_name = "commands.start_broadcast"
    kind: Literal["start_broadcast"] = "start_broadcast"
    audience: Audience
    text: BroadcastText


class ConfirmBroadcast(Command):
    task_name = "commands.confirm_broadcast"
    kind: Literal["confirm_broadcast"] = "confirm_broadcast"
    broadcast_id: RequestId


class CancelBroadcast(Command):
    task_name = "commands.cancel_broadcast"
    kind: Literal["cancel_broadcast"] = "cancel_broadcast"
    broadcast_id: RequestId


# --- Reports ---------------------------------------------------------------------------------


class ShowReport(Command):
    """An admin asks for a report: summary, chart and CSV, built on the `reports` queue."""

    task_name = "commands.show_report"
    kind: Literal["show_report"] = "show_report"
    period: OnDemandReport = ReportKind.TODAY


# --- Privacy ---------------------------------------------------------------------------------


class ExportMyData(Command):
    """/export: everything stored about the actor, sent to them as a JSON file."""

    task_name = "privacy.export"
    kind: Literal["export_my_data"] = "export_my_data"


class EraseMe(Command):
    """/forget_me, confirmed: erase the actor's personal data (always the actor's own)."""

    task_name = "privacy.erase_user"
    kind: Literal["erase_me"] = "erase_me"
