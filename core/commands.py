"""The bot-worker contract: commands are pydantic models sent as a task's JSON kwargs."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core import limits
from core.domain import Action, Priority, Status
from core.roles import Role

SCHEMA_VERSION = 1


def idempotency_key(update_id: int) -> str:
    # Telegram's update ids are unique per bot, so they identify a user action.
    return f"tg-update:{update_id}"


class Actor(BaseModel):
    """Who acts, as Telegram sent it (not trusted for authorization: the worker checks roles)."""

    model_config = ConfigDict(frozen=True)

    user_id: int
    chat_id: int
    language: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    task_name: ClassVar[str]

    schema_version: int = Field(default=SCHEMA_VERSION, alias="schema")
    idempotency_key: str = Field(min_length=1, max_length=200)
    actor: Actor

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
    file_name: str | None = Field(default=None, max_length=255)
    mime_type: str | None = Field(default=None, max_length=128)
    size: int | None = Field(default=None, ge=0, le=limits.MAX_FILE_BYTES)


Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=limits.TITLE_MAX)
]
Description = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=limits.DESCRIPTION_MAX)
]
Location = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=limits.LOCATION_MAX)
]
CommentText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=limits.COMMENT_MAX)
]
RequestId = Annotated[int, Field(ge=1)]


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
    page: int = Field(default=0, ge=0)
    edit_message_id: int | None = None  # a page button edits the list in place


class ShowQueue(Command):
    task_name = "commands.show_queue"
    kind: Literal["show_queue"] = "show_queue"
    page: int = Field(default=0, ge=0)
    status: Status | None = None
    location: str | None = Field(default=None, max_length=limits.LOCATION_MAX)
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
    note: str | None = Field(default=None, max_length=limits.REASON_MAX)
    file_id: str | None = Field(default=None, max_length=255)  # a closing photo
    assignee: int | None = None  # Telegram id, for ASSIGN


class ShowAssignees(Command):
    """An admin pressed Assign: reply with the staff to choose from."""

    task_name = "commands.show_assignees"
    kind: Literal["show_assignees"] = "show_assignees"
    request_id: RequestId


class AddComment(Command):
    task_name = "commands.add_comment"
    kind: Literal["add_comment"] = "add_comment"
    request_id: RequestId
    text: CommentText
    file_id: str | None = Field(default=None, max_length=255)


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
    target: str = Field(min_length=1, max_length=64)
    role: Role | None = None


class ListStaff(Command):
    task_name = "commands.list_staff"
    kind: Literal["list_staff"] = "list_staff"


# --- Broadcasts -------------------------------------------------------------------------------

Audience = Literal["residents", "staff", "everyone"]
BroadcastText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=limits.BROADCAST_MAX)
]


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
