"""The nightly consistency check's message to the admins, sent only when it found something."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import now
from core.roles import Role
from core.texts import t
from db.models import Outbox, User
from db.session import session_scope
from workers.outbox import Replies
from workers.upkeep.consistency import Report


def tell_admins(report: Report) -> list[int]:
    """Outbox rows to every admin, keyed by the day: a rerun the same day tells nobody twice."""
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.totals.items()))
    total = sum(report.totals.values())
    with session_scope() as session:
        replies = Replies.for_job(session, f"consistency:{now():%Y-%m-%d}")
        if outbox_written(session, replies.key):
            return []
        admins = session.scalars(
            select(User).where(
                User.role == Role.ADMIN, User.telegram_id.is_not(None), User.reachable.is_(True)
            )
        )
        for admin in admins:
            assert admin.telegram_id is not None
            text = t("consistency.found", admin.language, total=total, kinds=kinds)
            replies.message(admin.telegram_id, text, user_id=admin.id)
        session.flush()
        return [r.id for r in replies.rows]


def outbox_written(session: Session, key: str) -> bool:
    found = session.scalar(
        select(Outbox.id).where(Outbox.dedupe_key.startswith(key + ":", autoescape=True)).limit(1)
    )
    return found is not None
