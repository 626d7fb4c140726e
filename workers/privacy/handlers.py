"""/export and /forget_me, confirmed: always about the actor themselves (a command names no
one else, so nobody can export or erase another user through the bot)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from core import commands as c
from core.clock import now
from core.domain import ErasureMode, ErasureReason
from core.logging import get_logger
from core.settings import get_settings
from core.texts import pick_language, t
from db.models import ErasureAudit
from workers import uploads
from workers.kit.context import Ctx
from workers.outbox import Replies
from workers.privacy.erasure import export_key_prefix, scrub_signature, unlink
from workers.privacy.export import write_export

log = get_logger(__name__)


def export_my_data(session: Session, command: c.ExportMyData, replies: Replies) -> None:
    ctx = Ctx.load(session, command, replies)
    name = f"zavhoz-export-{now().date().isoformat()}.json"
    with tempfile.TemporaryDirectory(prefix="zavhoz-export-") as tmp:
        path = Path(tmp) / name
        write_export(session, ctx.actor, path)
        file = uploads.store(
            session, f"{export_key_prefix(ctx.actor.id)}{replies.key}", name, path.read_bytes()
        )
    payload = {
        **uploads.reference("document", file),
        "caption": t("privacy.export.caption", ctx.lang),
        # Sent once, then neither the row nor the file is kept: both hold all their data.
        uploads.FORGET_AFTER_SEND: True,
    }
    replies.send(command.actor.chat_id, "sendDocument", payload, user_id=ctx.actor.id)


def erase_me(session: Session, command: c.EraseMe, replies: Replies) -> None:
    # No Ctx.load: that would refresh the very profile this erases.
    lang = pick_language(command.actor.language)
    audit = erase_then_tell(
        session, replies, command.actor.user_id, ErasureReason.SELF, (command.actor.chat_id, lang)
    )
    log.info("privacy.erasure_started", erasure=audit.id)


def erase_then_tell(
    session: Session,
    replies: Replies,
    telegram_id: int,
    reason: ErasureReason,
    tell: tuple[int, str] | None,
) -> ErasureAudit:
    """Unlink the user now; the rest in steps after commit, the last of which tells them (at
    once when there is nothing left to scrub)."""
    mode = ErasureMode(get_settings().erasure_mode)
    audit = unlink(session, telegram_id, reason=reason, mode=mode, tell=tell)
    if audit.pending is not None:
        replies.after_commit.append(scrub_signature(audit.id))
    elif tell is not None:
        chat_id, lang = tell
        # The last message: linked to no one, and gone once sent (it holds their chat id).
        replies.message(chat_id, t("privacy.erased", lang), **{uploads.FORGET_AFTER_SEND: True})
    return audit
