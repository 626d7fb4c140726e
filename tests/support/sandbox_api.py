"""A small sync client of the sandbox's control API, for tests."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any


class SandboxAPI:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def reset(self) -> None:
        self._call("POST", "/sandbox/reset", {})

    def send_text(self, user_id: int, text: str, **profile: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", "/sandbox/messages", {"user_id": user_id, "text": text, **profile}
        )
        return result

    def press(self, user_id: int, message_id: int, data: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            "/sandbox/callbacks",
            {"user_id": user_id, "message_id": message_id, "data": data},
        )
        return result

    def messages(self, chat_id: int, after: int = 0, wait: float = 0) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "GET",
            f"/sandbox/chats/{chat_id}/messages?after={after}&wait={wait}",
            timeout=wait + 30,
        )
        return result

    def wait_messages(
        self, chat_id: int, count: int = 1, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """At least `count` messages to the chat, or an AssertionError naming what arrived."""
        deadline = time.monotonic() + timeout
        got = self.messages(chat_id)
        while len(got) < count and time.monotonic() < deadline:
            self.messages(chat_id, after=max((m["seq"] for m in got), default=0), wait=1)
            got = self.messages(chat_id)
        assert len(got) >= count, f"expected {count} message(s) to {chat_id}, got {got}"
        return got

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/sandbox/stats")
        return result

    def fault(self, kind: str, **options: Any) -> None:
        self._call("POST", "/sandbox/faults", {"kind": kind, **options})

    def clear_faults(self) -> None:
        self._call("DELETE", "/sandbox/faults")

    def configure(self, **options: Any) -> None:
        self._call("POST", "/sandbox/config", options)

    def download(self, file_id: str, token: str | None = None) -> bytes:
        """A file's bytes as the bot would fetch them (getFile, then the file URL)."""
        from core.settings import SANDBOX_TOKEN

        token = token or SANDBOX_TOKEN
        meta = self._call("POST", f"/bot{token}/getFile", {"file_id": file_id})
        path = meta["result"]["file_path"]
        with urllib.request.urlopen(f"{self.url}/file/bot{token}/{path}", timeout=30) as response:
            data: bytes = response.read()
        return data
