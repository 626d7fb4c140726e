"""SCHEDULE_<JOB> settings (cron in TIMEZONE, seconds, empty disables), SLA durations, and the
periods reports cover."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab

from core.domain import ReportKind
from core.schedules import Cron, Interval, parse_duration, parse_schedule
from core.settings import Settings
from workers.app import CRON_EXPIRY_S, beat_schedule
from workers.reports.periods import period_for


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("0 8 * * *", Cron("0", "8", "*", "*", "*")),
        ("0 8 * * mon", Cron("0", "8", "*", "*", "mon")),
        ("*/5 * * * *", Cron("*/5", "*", "*", "*", "*")),
        ("30", Interval(30.0)),
        ("0.5", Interval(0.5)),
        ("", None),
        ("  ", None),
    ],
)
def test_schedules_parse(text: str, parsed: object) -> None:
    assert parse_schedule(text) == parsed


@pytest.mark.parametrize("text", ["0 25 * * *", "0 8 * *", "daily", "-30", "0", "0 8 * * 9"])
def test_bad_schedules_are_named(text: str) -> None:
    with pytest.raises(ValueError, match=r"cron|seconds|interval"):
        parse_schedule(text)


def test_a_bad_schedule_setting_stops_the_process_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from core.settings import describe_error

    monkeypatch.setenv("SCHEDULE_REPORT_DAILY", "8 o'clock")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_error(caught.value).startswith("invalid setting SCHEDULE_REPORT_DAILY:")


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("4h") == timedelta(hours=4)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("45") == timedelta(seconds=45)
    for bad in ("4x", "", "h", "0h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_beat_schedule_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEZONE", "Europe/Moscow")
    monkeypatch.setenv("SCHEDULE_RELAY", "10")
    monkeypatch.setenv("SCHEDULE_REPORT_WEEKLY", "")
    entries = beat_schedule(Settings())
    assert set(entries) == {
        "relay",
        "report_daily",
        "retention",
        "escalate",
        "consistency",
        "orphans",
    }  # weekly off
    assert entries["relay"]["schedule"] == 10.0
    assert entries["relay"]["options"] == {"expires": 10.0}
    daily = entries["report_daily"]
    assert daily["task"] == "reports.daily"
    assert isinstance(daily["schedule"], crontab)
    assert daily["schedule"].hour == {8} and daily["schedule"].minute == {0}
    assert daily["options"] == {"expires": CRON_EXPIRY_S}


MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


def test_scheduled_periods_are_whole_days_before_today() -> None:
    monday_8am = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 08:00 in Moscow
    daily = period_for(ReportKind.DAILY, monday_8am, MSK)
    assert (daily.first_day, daily.last_day) == (date(2026, 11, 22), date(2026, 11, 22))
    assert daily.start == datetime(2026, 11, 21, 21, 0, tzinfo=UTC)
    assert daily.end == datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert daily.label() == "22.11.2026" and daily.key == "daily:2026-11-22"
    weekly = period_for(ReportKind.WEEKLY, monday_8am, MSK)
    assert (weekly.first_day, weekly.last_day) == (date(2026, 11, 16), date(2026, 11, 22))
    assert len(weekly.chart_days()) == 14  # a week's chart still shows two weeks


def test_on_demand_periods_end_now_and_days_follow_dst() -> None:
    at = datetime(2026, 10, 26, 12, 0, tzinfo=UTC)  # Berlin left summer time on the 25th
    week = period_for(ReportKind.WEEK, at, BERLIN)
    assert (week.first_day, week.last_day, week.end) == (date(2026, 10, 20), date(2026, 10, 26), at)
    assert week.start == datetime(2026, 10, 19, 22, 0, tzinfo=UTC)  # midnight at UTC+2
    today = period_for(ReportKind.TODAY, at, BERLIN)
    assert today.start == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # midnight at UTC+1
    assert len(period_for(ReportKind.MONTH, at, BERLIN).chart_days()) == 30
