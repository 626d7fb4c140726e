"""Webhook mode: Telegram (the sandbox) posts updates; the secret token is checked."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict[str, object], secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_webhook_mode_answers_start_and_refuses_a_wrong_secret(
    procs: Processes, live_sandbox: SandboxAPI
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    procs.worker()
    bot = procs.start(
        "bot",
        "bot",
        WEBHOOK_URL=url,
        WEBHOOK_SECRET="s3cret-token",
        WEBHOOK_HOST="127.0.0.1",
        WEBHOOK_PORT=str(port),
    )
    bot.wait_for_log("bot.webhook")
    assert live_sandbox.stats()["webhook_url"] == url

    live_sandbox.send_text(9009, "/start", first_name="Wes")
    (welcome,) = live_sandbox.wait_messages(9009, 1)
    assert welcome["text"].startswith("Hello, Wes!")

    forged = {
        "update_id": 10**9,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 9009, "type": "private"},
            "text": "/start",
        },
    }
    assert post(url, forged, secret="wrong") == 401
    assert post(url, forged, secret=None) == 401
    assert "s3cret-token" not in bot.log()  # the secret never reaches a log line


@pytest.fixture(autouse=True)
def _no_polling_left(live_sandbox: SandboxAPI) -> None:
    """The sandbox starts without a webhook; the bot sets it (and polling would get 409)."""
    assert live_sandbox.stats()["webhook_url"] in (None, "")
