"""Reports on PostgreSQL: the hand-worked figures (percentile_cont) and CSV of the SQLite
tests, and two beat processes against real Redis firing each scheduled report once a tick."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from core.domain import ReportKind
from core.settings import get_settings
from db.models import User
from tests.support import report_data
from tests.support.processes import Processes, beat_sends
from tests.support.sandbox_api import SandboxAPI
from workers.reports.csv_export import write_csv
from workers.reports.figures import compute
from workers.reports.periods import period_for

UTC = ZoneInfo("UTC")


def test_figures_and_csv_on_postgres(pg_url: str, tmp_path: Path) -> None:
    engine = create_engine(pg_url)
    try:
        with Session(engine) as session:
            report_data.seed(session)
            session.commit()
            period = period_for(ReportKind.TODAY, report_data.AT, UTC)
            report_data.assert_figures(
                compute(session, period, report_data.AT, get_settings().sla_by_priority())
            )
            assert write_csv(session, period, tmp_path / "r.csv") == 7
    finally:
        engine.dispose()
    assert (tmp_path / "r.csv").read_text(encoding="utf-8").replace("\r\n", "\n") == report_data.CSV


TICK_S = 3


def test_two_beats_send_each_scheduled_report_once_a_tick(
    procs: Processes, live_sandbox: SandboxAPI, pg_url: str
) -> None:
    admin = 4401
    engine = create_engine(pg_url)
    with Session(engine) as session:
        session.add(User(telegram_id=admin, role="admin", language="en"))
        session.commit()
    engine.dispose()
    live_sandbox._call("POST", "/sandbox/users", {"id": admin})
    procs.env.update(
        SCHEDULE_REPORT_DAILY=str(TICK_S), SCHEDULE_REPORT_WEEKLY="", SCHEDULE_RELAY=""
    )
    worker = procs.worker("w", "-c", "2")
    beats = [procs.start(f"beat{n}", "beat") for n in (1, 2)]

    def runs() -> list[str]:
        return re.findall(r"Task reports\.daily\[[^\]]+\] received", worker.log())

    # Timed from the first run, not from the start: two beats starting on a loaded machine
    # may take several ticks to import, and that says nothing about double firing.
    deadline = time.monotonic() + 90
    while not runs() and time.monotonic() < deadline:
        time.sleep(0.2)
    first = time.monotonic()
    while len(runs()) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(TICK_S)
    for beat in beats:
        beat.stop()
    elapsed = time.monotonic() - first
    time.sleep(2)  # the last tick's task runs
    sent_at = sorted(at for beat in beats for at in beat_sends(beat.log(), "report_daily"))
    # One tick, one run: each task the beats sent ran once ...
    assert len(sent_at) == len(runs()), (sent_at, len(runs()))
    # ... and no tick was sent twice: the two beats' sends are a tick apart, never together.
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert gaps and min(gaps) > TICK_S / 2, gaps
    assert 4 <= len(runs()) <= elapsed / TICK_S + 2, (len(runs()), elapsed)
    # And every run was for the same day: the admin got that day's report once.
    texts = [m["text"] for m in live_sandbox.messages(admin) if m["text"]]
    assert len(texts) == 1 and texts[0].startswith("📊 Report for"), texts
    assert sum(1 for m in live_sandbox.messages(admin) if m["photo"]) == 1
