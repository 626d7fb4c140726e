"""A scripted user of the sandbox: says things, waits for answers, presses buttons by text."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.support.sandbox_api import SandboxAPI

Message = dict[str, Any]


class Chat:
    def __init__(self, api: SandboxAPI, user_id: int, **profile: Any) -> None:
        self.api, self.user_id = api, user_id
        self.profile = {"first_name": f"u{user_id}", "username": f"u{user_id}", **profile}
        self.seen = max((m["seq"] for m in api.messages(user_id)), default=0)

    def say(self, text: str) -> None:
        self.api.send_text(self.user_id, text, **self.profile)

    def send_photos(
        self, count: int, *, album: str | None = None, caption: str | None = None
    ) -> None:
        for _ in range(count):
            body: dict[str, Any] = {"user_id": self.user_id, **self.profile}
            if album:
                body["media_group_id"] = album
            if caption:
                body["caption"] = caption
            self.api._call("POST", "/sandbox/photos", body)

    def wait(self, match: str | Callable[[Message], bool], timeout: float = 30) -> Message:
        """The first new message (since the last wait) whose text contains `match`."""
        test = (
            (lambda m: match in (m.get("text") or m.get("caption") or ""))
            if isinstance(match, str)
            else match
        )
        deadline = time.monotonic() + timeout
        while True:
            fresh = self.api.messages(self.user_id, after=self.seen)
            for message in fresh:
                if test(message):
                    self.seen = max(self.seen, message["seq"])
                    return message
            if time.monotonic() > deadline:
                got = [(m["seq"], m.get("text")) for m in self.api.messages(self.user_id)]
                raise AssertionError(f"user {self.user_id} never got {match!r}; got {got}")
            self.api.messages(
                self.user_id, after=max([self.seen] + [m["seq"] for m in fresh]), wait=0.5
            )

    def all_texts(self) -> list[str]:
        return [m.get("text") or "" for m in self.api.messages(self.user_id)]

    @staticmethod
    def buttons(message: Message) -> list[dict[str, str]]:
        markup = message.get("reply_markup") or {}
        return [b for row in markup.get("inline_keyboard", []) for b in row]

    def press(self, message: Message, label: str) -> None:
        """Press the inline button whose text contains `label` on `message`."""
        for button in self.buttons(message):
            if label in button["text"]:
                self.api.press(self.user_id, message["message_id"], button["callback_data"])
                return
        raise AssertionError(f"no button {label!r} in {self.buttons(message)}")

    def forge(self, message: Message, data: str) -> None:
        """Press a button that was never offered (a modified client can)."""
        self.api.press(self.user_id, message["message_id"], data)
