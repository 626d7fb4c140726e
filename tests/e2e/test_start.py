"""End to end: the real bot and worker processes, the sandbox over HTTP, PostgreSQL and Redis."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.menu import main_menu
from core.roles import Role
from core.texts import t
from db.models import User
from tests.support.processes import Processes
from tests.support.sandbox_api import SandboxAPI
from tests.support.tcp_proxy import TcpProxy


def test_start_is_answered_with_welcome_and_menu(
    procs: Processes, live_sandbox: SandboxAPI, pg_url: str
) -> None:
    procs.worker()
    procs.start("bot", "bot").wait_for_log("bot.polling")
    live_sandbox.send_text(7007, "/start", first_name="Ivan", language_code="ru")

    (welcome,) = live_sandbox.wait_messages(7007, 1)
    assert welcome["text"].startswith("Здравствуйте, Ivan!")
    assert welcome["reply_markup"]["keyboard"] == main_menu(Role.RESIDENT, "ru")["keyboard"]
    engine = create_engine(pg_url)
    with Session(engine) as s:
        user = s.scalars(select(User)).one()
    engine.dispose()
    assert (user.telegram_id, user.language, user.role) == (7007, "ru", "resident")

    live_sandbox.send_text(7007, t("menu.help", "ru"))  # the menu button works too
    assert live_sandbox.wait_messages(7007, 2)[1]["text"].startswith("Что я умею")


def test_bot_survives_the_broker_down_for_10_seconds(
    procs: Processes, live_sandbox: SandboxAPI, redis_url: str
) -> None:
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = TcpProxy(host, int(port))
    try:
        procs.worker()  # the worker reaches Redis directly; only the bot loses it
        bot = procs.start(
            "bot", "bot", REDIS_URL=f"redis://127.0.0.1:{proxy.port}/{redis_url.rsplit('/', 1)[1]}"
        )
        bot.wait_for_log("bot.polling")
        proxy.pause()
        live_sandbox.send_text(8008, "/start", first_name="Olga")
        time.sleep(10)

        # Nothing answered, nothing acknowledged: the update is still pending at "Telegram".
        assert live_sandbox.messages(8008) == []
        assert live_sandbox.stats()["updates_pending"] == 1
        assert "update.retry" in bot.log()  # the dialog storage, on the same Redis, fails first
        assert bot.popen.poll() is None

        proxy.resume()
        (welcome,) = live_sandbox.wait_messages(8008, 1, timeout=30)
        assert welcome["text"].startswith("Hello, Olga!")
        time.sleep(1)
        assert len(live_sandbox.messages(8008)) == 1  # once, not once per retry
    finally:
        proxy.close()
