"""/report: the command checks the role and answers at once; the report itself is built on
the `reports` queue (it may take a second or two on a large site)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from celery import signature
from sqlalchemy.orm import Session

from core import commands as c
from core.clock import now
from core.settings import get_settings
from workers.kit.context import Ctx, require_admin
from workers.outbox import Replies
from workers.reports.periods import period_for

ON_DEMAND_TASK = "reports.on_demand"


def show_report(session: Session, command: c.ShowReport, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    if not require_admin(ctx):
        return
    period = period_for(command.period, now(), ZoneInfo(get_settings().timezone))
    ctx.reply("report.preparing", period=period.label())
    replies.after_commit.append(
        signature(
            ON_DEMAND_TASK,
            kwargs={
                "kind": command.period.value,
                "chat_id": command.actor.chat_id,
                "user_id": ctx.actor.id,
                "lang": ctx.lang,
                # The report's rows are keyed on the command: a redelivery sends it once.
                "key": f"{replies.key}:report",
            },
        )
    )
