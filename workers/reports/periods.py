"""A report's period: local calendar days in TIMEZONE, as UTC instants for the queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.domain import ReportKind

# A chart shows at least this many days, so a one-day report still shows the trend.
MIN_CHART_DAYS = 14


@dataclass(frozen=True)
class Period:
    kind: ReportKind
    first_day: date
    last_day: date  # inclusive
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive (for today's: now)
    tz: ZoneInfo

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def key(self) -> str:
        """Names the period in dedupe keys: one scheduled report per job and period."""
        return f"{self.kind}:{self.first_day.isoformat()}"

    def chart_days(self) -> list[date]:
        count = max(self.days, MIN_CHART_DAYS)
        return [self.last_day - timedelta(days=n) for n in range(count - 1, -1, -1)]

    def label(self) -> str:
        if self.first_day == self.last_day:
            return self.first_day.strftime("%d.%m.%Y")
        return f"{self.first_day:%d.%m.%Y} – {self.last_day:%d.%m.%Y}"


def midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant a local day starts (zoneinfo handles DST)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(ZoneInfo("UTC"))


def period_for(kind: ReportKind, at: datetime, tz: ZoneInfo) -> Period:
    today = at.astimezone(tz).date()
    if kind is ReportKind.DAILY:
        first = last = today - timedelta(days=1)
    elif kind is ReportKind.WEEKLY:
        last = today - timedelta(days=today.weekday() + 1)  # last Sunday
        first = last - timedelta(days=6)
    else:
        span = {ReportKind.TODAY: 1, ReportKind.WEEK: 7, ReportKind.MONTH: 30}[kind]
        first, last = today - timedelta(days=span - 1), today
    end = at if last == today else midnight(last + timedelta(days=1), tz)
    return Period(kind, first, last, midnight(first, tz), end, tz)
