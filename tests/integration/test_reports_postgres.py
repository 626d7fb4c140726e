"""Reports on PostgreSQL: the hand-worked figures (percentile_cont) and CSV of the SQLite
tests, and two beat processes against real Redis firing each scheduled report once a tick."""

from __future__ import annotations

import itertools
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from core.domain import ReportKind
from core.settings import get_settings
from db.models import Request, RequestEvent, User
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


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/New_York", "Europe/Moscow"])
def test_the_copy_csv_is_the_row_by_row_csv(pg_url: str, tmp_path: Path, zone: str) -> None:
    """PostgreSQL's COPY writes exactly what the row-by-row writer does: time zones with half
    hours and daylight saving, text needing quotes, every kind of staff name, rounding."""
    from workers.reports import csv_export

    engine = create_engine(pg_url)
    at = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)  # New York moves its clocks this day
    try:
        with Session(engine) as session:
            erased = User(telegram_id=None, role="staff", erased_at=at)
            staff = [
                User(telegram_id=801, role="staff", first_name="Анна", last_name="Ли"),
                User(telegram_id=802, role="staff", username="bob"),
                User(telegram_id=803, role="staff"),
                User(telegram_id=804, role="staff", first_name="", username=""),
                erased,
            ]
            session.add_all(staff)
            session.flush()
            texts = ['Leak, "big" one', "Line one\nline two", "  spaced  ", "Room 5; ok", "é"]
            for i in range(40):
                created = at - timedelta(hours=30) + timedelta(minutes=37 * i, seconds=i)
                done = created + timedelta(minutes=9 * (i + 1), seconds=i % 7)
                request = Request(
                    title=texts[i % 5],
                    description="x",
                    location=texts[(i + 2) % 5],
                    priority="normal",
                    status="done" if i % 3 else "new",
                    created_at=created,
                    updated_at=created,
                    assignee_id=None if i % 7 == 0 else staff[i % 5].id,
                    accepted_at=created + timedelta(minutes=1) if i % 3 else None,
                    done_at=done if i % 3 else None,
                    rating=None if i % 4 else 1 + i % 5,
                )
                session.add(request)
                session.flush()
                session.add(
                    RequestEvent(
                        request_id=request.id, action="created", to_status="new", created_at=created
                    )
                )
            session.commit()
            period = period_for(ReportKind.WEEK, at, ZoneInfo(zone))
            copied = csv_export.write_csv(session, period, tmp_path / "copy.csv")
            written = csv_export._rows_csv(session, period, tmp_path / "rows.csv")
    finally:
        engine.dispose()
    assert copied == written == 40
    rows = (tmp_path / "rows.csv").read_text(encoding="utf-8").replace("\r\n", "\n")
    assert (tmp_path / "copy.csv").read_text(encoding="utf-8") == rows
    # What the data was made to hold: quoting, names of every kind, a half-up rounding
    # (2 h 15 min is 2.3, not binary floating point's 2.2), the zone's own offsets.
    for expected in ('"Line one\nline two"', '"Leak, ""big"" one"', "Анна Ли", "@bob", "—"):
        assert expected in rows, expected
    assert ",2.3," in rows and ",2.2," not in rows
    offsets = {"UTC": "+00:00", "Asia/Kolkata": "+05:30", "America/New_York": "-05:00"}
    assert offsets.get(zone, "+03:00") in rows
