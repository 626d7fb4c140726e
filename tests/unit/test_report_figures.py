"""Report figures on SQLite (the PostgreSQL twin is tests/integration/test_report_postgres.py):
one hand-worked data set, the summary's text and the CSV's exact contents."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.domain import ReportKind
from core.settings import get_settings
from core.texts import duration
from tests.support import report_data
from workers.reports.csv_export import write_csv
from workers.reports.figures import compute
from workers.reports.periods import period_for
from workers.reports.summary import summary_text

UTC = ZoneInfo("UTC")


def test_figures_match_the_hand_worked_ones(db: Engine) -> None:
    with Session(db) as session:
        report_data.seed(session)
        session.commit()
        period = period_for(ReportKind.TODAY, report_data.AT, UTC)
        figures = compute(session, period, report_data.AT, get_settings().sla_by_priority())
    report_data.assert_figures(figures)


def test_the_csv_has_each_touched_request_and_no_resident(db: Engine, tmp_path: Path) -> None:
    with Session(db) as session:
        report_data.seed(session)
        session.commit()
        period = period_for(ReportKind.TODAY, report_data.AT, UTC)
        rows = write_csv(session, period, tmp_path / "r.csv")
    text = (tmp_path / "r.csv").read_text(encoding="utf-8")
    assert rows == 7
    assert text.replace("\r\n", "\n") == report_data.CSV
    assert "Rita" not in text and "rita" not in text and "601" not in text


def test_the_summary_names_the_report_and_its_period_first(db: Engine) -> None:
    with Session(db) as session:
        report_data.seed(session)
        session.commit()
        period = period_for(ReportKind.TODAY, report_data.AT, UTC)
        figures = compute(session, period, report_data.AT, get_settings().sla_by_priority())
    text = summary_text(figures, "en")
    lines = text.splitlines()
    assert lines[0] == "📊 <b>Report for 22.11.2026</b>"
    assert "Created 4 · done 2 · rejected 1 · cancelled 1 · reopened 1" in lines[1]
    assert "<b>Open now: 5</b>" in text
    assert "⏰ Overdue: 3" in text
    assert "To accept: median 1 h, 90% within 17 h 48 min (3)" in text
    assert "To done: median 17 h, 90% within 1 d 3 h (2)" in text
    assert "Anna Ivanova: 1 / 2" in text and "@bob: 2 / 0" in text
    assert "Room 101: 2" in text
    assert "⭐ Rating: 4.0 from 2 ratings" in text
    assert "Rita" not in text
    ru = summary_text(figures, "ru")
    assert ru.splitlines()[0] == "📊 <b>Отчёт за 22.11.2026</b>"


def test_an_empty_site_reports_zeros(db: Engine) -> None:
    with Session(db) as session:
        period = period_for(ReportKind.MONTH, report_data.AT, UTC)
        figures = compute(session, period, report_data.AT, get_settings().sla_by_priority())
    assert figures.open_total == 0 and figures.to_done.count == 0 and figures.staff == []
    assert len(figures.days) == 30 and all(p.backlog == 0 for p in figures.days)
    assert "No ratings" in summary_text(figures, "en")


def test_durations_read_in_two_units_at_most() -> None:
    assert duration(timedelta(seconds=45), "en") == "45 s"
    assert duration(timedelta(hours=26, minutes=5), "en") == "1 d 2 h"
    assert duration(timedelta(minutes=200), "ru") == "3 ч 20 мин"
    assert duration(None, "en") == "—"
