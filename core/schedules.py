"""Scheduled jobs' settings: `SCHEDULE_<JOB>` and durations like `SLA_URGENT=4h`.

A schedule is a five-field cron expression read in `TIMEZONE` (`0 8 * * 1`), or a plain number
of seconds for an interval (`30`); an empty value disables the job. Parsed here (pure, no
Celery) so a bad value stops every process at start with one line; the workers turn the result
into Celery's schedules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

# Celery's crontab takes each field as text and validates its syntax: here only the shape and
# the characters, so a typo is named at start rather than when beat loads the schedule.
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-]+$")
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


@dataclass(frozen=True)
class Interval:
    seconds: float


@dataclass(frozen=True)
class Cron:
    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str

    def __str__(self) -> str:
        return " ".join(getattr(self, name) for name in CRON_FIELDS)


Schedule = Interval | Cron


def parse_schedule(value: str) -> Schedule | None:
    """None: the job is disabled."""
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        fields = text.split()
        if len(fields) != len(CRON_FIELDS) or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(
                f"expected a cron expression like '0 8 * * *' or a number of seconds, got {text!r}"
            ) from None
        _check_cron(fields)
        return Cron(*fields)
    if not seconds > 0:
        raise ValueError(f"an interval must be a positive number of seconds, got {text!r}")
    return Interval(seconds)


def _check_cron(fields: list[str]) -> None:
    """Let Celery's own parser judge the fields (it knows names like `mon` and ranges)."""
    from celery.schedules import ParseException, crontab_parser

    bounds = ((60, 0), (24, 0), (31, 1), (12, 1), (7, 0))
    for name, text, (size, first) in zip(CRON_FIELDS, fields, bounds, strict=True):
        try:
            crontab_parser(size, first).parse(text)
        except (ParseException, ValueError) as error:
            raise ValueError(f"bad cron {name} field {text!r}: {error}") from None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> timedelta:
    """`90s`, `30m`, `4h`, `2d`, `1w`, or plain seconds."""
    match = _DURATION.match(value.lower())
    if match is None:
        raise ValueError(f"expected a duration like 90s, 30m, 4h or 2d, got {value!r}")
    amount, unit = float(match.group(1)), match.group(2)
    if amount <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return timedelta(seconds=amount * _UNIT_SECONDS[unit])
