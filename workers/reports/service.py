"""Building a report and handing it to the outbox: the summary, then the chart as a photo,
then the CSV as a document, to each recipient in that order.

The figures are read in a transaction of their own (it may take a second on a large site);
the outbox rows and files are written in a short one that also claims the report's key, so a
job that runs twice for one tick (a redelivery, two beats) writes its rows once.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from celery import Signature
from sqlalchemy import select

from core.clock import now
from core.domain import ON_DEMAND_REPORTS, ReportKind
from core.logging import get_logger
from core.roles import Role
from core.settings import get_settings
from core.texts import t
from db.models import User
from db.session import session_scope
from workers import outbox, uploads
from workers.command_runner import claim_key
from workers.kit.keyboards import button, inline
from workers.outbox import Replies
from workers.reports.chart import ChartLabels, render_chart
from workers.reports.csv_export import write_csv
from workers.reports.figures import Figures, compute
from workers.reports.periods import Period, period_for
from workers.reports.summary import summary_text

log = get_logger(__name__)


@dataclass(frozen=True)
class Recipient:
    chat_id: int
    user_id: int | None
    lang: str


@dataclass(frozen=True)
class Built:
    figures: Figures
    charts: dict[str, bytes]  # per language: the PNG
    csv: bytes
    csv_rows: int


def build(kind: ReportKind, *, at: datetime | None = None, langs: set[str] | None = None) -> Built:
    """Figures, a chart per language and the CSV, all from one read-only transaction."""
    at = at or now()
    period = period_for(kind, at, ZoneInfo(get_settings().timezone))
    with session_scope() as session, tempfile.TemporaryDirectory(prefix="zavhoz-report-") as tmp:
        figures = compute(session, period, at, get_settings().sla_by_priority())
        csv_path = Path(tmp) / "report.csv"
        rows = write_csv(session, period, csv_path)
        charts = {}
        for lang in sorted(langs or {"en"}):
            png = Path(tmp) / f"chart-{lang}.png"
            render_chart(figures.days, chart_title(period, lang), png, labels=chart_labels(lang))
            charts[lang] = png.read_bytes()
        return Built(figures, charts, csv_path.read_bytes(), rows)


def chart_title(period: Period, lang: str) -> str:
    # The chart prints its dates under the axis; the title says what is drawn.
    return str(t("report.chart.title", lang))


def chart_labels(lang: str) -> ChartLabels:
    return ChartLabels(
        created=str(t("report.chart.created", lang)),
        done=str(t("report.chart.done", lang)),
        backlog=str(t("report.chart.backlog", lang)),
        per_day=str(t("report.chart.per_day", lang)),
    )


def admins() -> list[Recipient]:
    """Every admin who can be written to (has started the bot and not blocked it)."""
    with session_scope() as session:
        rows = session.execute(
            select(User.telegram_id, User.id, User.language).where(
                User.role == Role.ADMIN,
                User.telegram_id.is_not(None),
                User.reachable.is_(True),
                User.erased_at.is_(None),
            )
        )
        return [Recipient(chat, uid, lang) for chat, uid, lang in rows if chat is not None]


def report_key(period: Period) -> str:
    return f"report:{period.key}"


def send_report(
    kind: ReportKind, recipients: list[Recipient], *, key: str | None = None
) -> tuple[list[int], list[Signature]]:
    """Build the report and write its rows; returns the outbox ids to send now, in order.
    `key` names this report (default: the scheduled job and period, so a report goes out once
    per period)."""
    at = now()
    period = period_for(kind, at, ZoneInfo(get_settings().timezone))
    key = key or report_key(period)
    if not recipients:
        log.info("report.no_recipients", report=str(kind))
        return [], []
    built = build(kind, at=at, langs={r.lang for r in recipients})
    with session_scope() as session:
        if claim_key(session, key, f"reports.{kind}", key) is not None:
            log.info("report.sent_before", report=str(kind), key=key)
            return outbox.pending_ids_for_key(session, key), []
        replies = Replies.for_job(session, key)
        csv_file = uploads.store(session, f"{key}:csv", _csv_name(period), built.csv)
        charts = {
            lang: uploads.store(session, f"{key}:chart:{lang}", "chart.png", png)
            for lang, png in built.charts.items()
        }
        for r in recipients:
            markup = _other_periods(r.lang) if kind in ON_DEMAND_REPORTS else None
            text = summary_text(built.figures, r.lang)
            replies.message(r.chat_id, text, user_id=r.user_id, reply_markup=markup)
            replies.send(
                r.chat_id,
                "sendPhoto",
                {
                    "caption": str(t("report.chart_caption", r.lang)),
                    **uploads.reference("photo", charts[r.lang]),
                },
                user_id=r.user_id,
            )
            replies.send(
                r.chat_id,
                "sendDocument",
                {
                    "caption": str(t("report.csv_caption", r.lang, count=built.csv_rows)),
                    **uploads.reference("document", csv_file),
                },
                user_id=r.user_id,
            )
        session.flush()
        log.info(
            "report.written",
            report=str(kind),
            key=key,
            recipients=len(recipients),
            csv_rows=built.csv_rows,
        )
        return [row.id for row in replies.rows], replies.after_commit


def _csv_name(period: Period) -> str:
    return f"zavhoz-{period.kind}-{period.first_day:%Y-%m-%d}.csv"


def _other_periods(lang: str) -> dict[str, object]:
    from core.callbacks import ReportCb

    return inline(
        [
            [
                button(t(f"report.button.{k}", lang), ReportCb(kind=k).pack())
                for k in ON_DEMAND_REPORTS
            ]
        ]
    )
