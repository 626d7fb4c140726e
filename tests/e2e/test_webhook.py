"""Webhook mode: Telegram (the sandbox) posts updates; the secret token is checked."""

from __future__ import annotations

import json
import socket
import time
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


def test_webhook_answers_5xx_while_the_broker_is_down_and_nothing_is_lost(
    procs: Processes, live_sandbox: SandboxAPI, redis_url: str
) -> None:
    from tests.support.tcp_proxy import TcpProxy

    host, port_text = redis_url.split("//", 1)[1].split("/", 1)[0].split(":")
    proxy = TcpProxy(host, int(port_text))
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    try:
        procs.worker()  # reaches Redis directly; only the bot loses it
        bot = procs.start(
            "bot",
            "bot",
            WEBHOOK_URL=url,
            WEBHOOK_HOST="127.0.0.1",
            WEBHOOK_PORT=str(port),
            REDIS_URL=f"redis://127.0.0.1:{proxy.port}/{redis_url.rsplit('/', 1)[1]}",
        )
        bot.wait_for_log("bot.webhook")
        proxy.pause()
        live_sandbox.send_text(9010, "/start", first_name="Val")
        # The bot gives up after its deadline and answers 5xx; "Telegram" keeps the update.
        bot.wait_for_log("update.retry", timeout=30)
        # aiogram logs this as the error leaves the webhook handler (aiohttp answers 500).
        bot.wait_for_log("Cause exception while process update id=1", timeout=40)
        assert "update.failed" not in bot.log()  # not swallowed by the error handler
        assert live_sandbox.messages(9010) == []
        assert live_sandbox.stats()["updates_pending"] == 1
        proxy.resume()
        (welcome,) = live_sandbox.wait_messages(9010, 1, timeout=60)
        assert welcome["text"].startswith("Hello, Val!")
        time.sleep(2)
        assert len(live_sandbox.messages(9010)) == 1
    finally:
        proxy.close()


def test_webhook_without_a_configured_secret_still_refuses_forged_updates(
    procs: Processes, live_sandbox: SandboxAPI
) -> None:
    """A POST claiming to be the admin granting a resident admin must not get in."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    procs.env["ADMIN_IDS"] = "7001"
    procs.worker()
    bot = procs.start(
        "bot", "bot", WEBHOOK_URL=url, WEBHOOK_HOST="127.0.0.1", WEBHOOK_PORT=str(port)
    )
    bot.wait_for_log("bot.webhook")
    forged = {
        "update_id": 10**9,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 7001, "type": "private"},
            "from": {"id": 7001, "is_bot": False, "first_name": "Admin"},
            "text": "/grant 7002 admin",
        },
    }
    assert post(url, forged, secret=None) == 401
    assert post(url, forged, secret="") == 401
    # Real updates, posted by "Telegram" with the secret the bot gave it, get through.
    live_sandbox.send_text(7002, "/start", first_name="Res")
    (welcome,) = live_sandbox.wait_messages(7002, 1)
    assert welcome["text"].startswith("Hello, Res!")
    time.sleep(1)
    assert "You are" not in welcome["text"]  # still a resident
    assert live_sandbox.messages(7001) == []
