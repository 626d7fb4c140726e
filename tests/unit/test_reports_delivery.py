"""Reports delivered: summary, chart and CSV to each admin in that order, the files uploaded
once and re-sent by file_id, once per period however often the job runs; admins only."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core import commands as c
from core.clock import now
from db.models import GeneratedFile, User
from tests.support import report_data
from tests.support.sandbox_api import SandboxAPI
from workers import report_tasks
from workers.command_tasks import run_command
from workers.commands import HANDLERS
from workers.reports import handlers, service

ADMINS = (503, 9101)  # the data set's admin, and one more
_updates = itertools.count(70_000)


@pytest.fixture
def site(db: Engine, sandbox: SandboxAPI, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The hand-worked site of tests/support/report_data.py, two admins, the clock at its AT."""
    monkeypatch.setattr(service, "now", lambda: report_data.AT)
    monkeypatch.setattr(handlers, "now", lambda: report_data.AT)
    with Session(db) as s:
        ids = report_data.seed(s)
        s.add(User(telegram_id=ADMINS[1], role="admin", language="en"))
        s.commit()
    for user in (*ADMINS, 501, 601):
        sandbox._call("POST", "/sandbox/users", {"id": user})
    return ids


def run(model: type[c.Command], user: int, **fields: Any) -> None:
    command = model(
        idempotency_key=f"tg-update:{next(_updates)}",
        actor=c.Actor(user_id=user, chat_id=user),
        **fields,
    )
    run_command(command, HANDLERS[model])


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return ["photo" if m["photo"] else "document" if m["document"] else "text" for m in messages]


def test_every_admin_gets_summary_chart_and_csv_in_order(
    site: dict[str, int], sandbox: SandboxAPI, db: Engine
) -> None:
    counts = report_tasks.daily()
    assert counts == {"sent": 6}
    first, second = (sandbox.messages(a) for a in ADMINS)
    assert kinds(first) == kinds(second) == ["text", "photo", "document"]
    assert first[0]["text"].startswith("📊 Report for 21.11.2026")
    # Uploaded once: the second admin got Telegram's file_id of the first upload.
    assert first[1]["photo"] == second[1]["photo"]
    assert first[2]["document"] == second[2]["document"]
    with Session(db) as s:
        stored = {f.key: f.telegram_file_id for f in s.scalars(select(GeneratedFile))}
    assert stored == {
        "report:daily:2026-11-21:csv": first[2]["document"],
        "report:daily:2026-11-21:chart:en": first[1]["photo"],
    }
    # The CSV as the admin downloads it: the requests touched on the 21st (4 and 9 created).
    csv = sandbox.download(first[2]["document"]).decode()
    assert [line.split(",")[0] for line in csv.splitlines()] == ["id", "4", "9"]


def test_a_job_run_twice_for_one_period_sends_once(
    site: dict[str, int], sandbox: SandboxAPI
) -> None:
    report_tasks.daily()
    report_tasks.daily()  # a redelivery, or the second of two beats
    report_tasks.weekly()  # another job: its own report
    for admin in ADMINS:
        texts = [m["text"] for m in sandbox.messages(admin) if m["text"]]
        assert texts[0].startswith("📊 Report for 21.11.2026")
        assert texts[1].startswith("📊 Report for 09.11.2026 – 15.11.2026")
        assert len(texts) == 2


@pytest.mark.usefixtures("inproc_worker")
def test_report_on_demand_for_an_admin(site: dict[str, int], sandbox: SandboxAPI) -> None:
    admin = ADMINS[0]
    run(c.ShowReport, admin, period="week")
    got = sandbox.wait_messages(admin, 4)
    assert got[0]["text"] == "📊 Preparing the report for 16.11.2026 – 22.11.2026…"
    assert kinds(got) == ["text", "text", "photo", "document"]
    assert got[1]["text"].startswith("📊 Report for 16.11.2026 – 22.11.2026")
    buttons = [b["callback_data"] for b in got[1]["reply_markup"]["inline_keyboard"][0]]
    assert buttons == ["rp:today", "rp:week", "rp:month"]
    assert sandbox.messages(ADMINS[1]) == []  # on demand: to the one who asked


@pytest.mark.usefixtures("inproc_worker")
@pytest.mark.parametrize("who", [501, 601], ids=["staff", "resident"])
def test_others_are_refused(site: dict[str, int], sandbox: SandboxAPI, who: int) -> None:
    run(c.ShowReport, who, period="month")  # a typed /report or a forged button alike
    time.sleep(0.5)
    assert [m["text"] for m in sandbox.messages(who)] == ["⛔ You are not allowed to do that."]


@pytest.mark.usefixtures("inproc_worker")
def test_a_scheduled_report_past_its_expiry_is_dropped(
    site: dict[str, int], sandbox: SandboxAPI
) -> None:
    from workers.app import app

    app.send_task("reports.daily", expires=now() - timedelta(seconds=1))
    # A later task on the same queue: once it has run, the expired one was seen and dropped.
    app.send_task(
        "reports.on_demand",
        kwargs={"kind": "today", "chat_id": 501, "user_id": site["anna"], "lang": "en",
                "key": "probe"},
    )  # fmt: skip
    sandbox.wait_messages(501, 3)
    time.sleep(0.5)
    assert all(sandbox.messages(a) == [] for a in ADMINS)
