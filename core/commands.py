"""The bot-worker contract: commands are pydantic models sent as a task's JSON kwargs."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

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
