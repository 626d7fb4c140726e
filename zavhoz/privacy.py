"""`zavhoz privacy export|erase|audit`: for requests that come by other channels (email,
paper). Export writes the same JSON the bot sends; erase runs the bot's erasure (reason
"admin") and tells the user, as /forget_me does; audit lists what erasures ran."""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.prompt import Confirm
from rich.table import Table

out = Console()
err = Console(stderr=True)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("privacy", help="a user's data: export, erase (GDPR); the audit")
    actions = parser.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="everything stored about a user, as JSON")
    export.add_argument("telegram_id", type=int)
    export.add_argument("--out", type=Path, help="the file (default VAR_DIR/exports/...)")
    erase = actions.add_parser("erase", help="erase a user's personal data (ERASURE_MODE)")
    erase.add_argument("telegram_id", type=int)
    erase.add_argument("--yes", action="store_true", help="do not ask")
    actions.add_parser("audit", help="the erasures that ran (no personal data)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    handler = {"export": _export, "erase": _erase, "audit": _audit}[args.action]
    return handler(args)


def _export(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from core.clock import now
    from core.settings import get_settings
    from db.models import User
    from db.session import session_scope
    from workers.privacy.export import write_export

    target: Path = args.out or (
        get_settings().var_dir / "exports" / f"zavhoz-export-{now().date().isoformat()}.json"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with session_scope() as session:
        user = session.scalars(select(User).where(User.telegram_id == args.telegram_id)).first()
        if user is None:
            err.print(f"no user with Telegram id {args.telegram_id} (never seen, or erased)")
            return 1
        with err.status("collecting…"):
            # Written beside the target, then moved: never a half-written export.
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                partial = Path(tmp.name)
            try:
                requests = write_export(session, user, partial)
                partial.replace(target)
            finally:
                partial.unlink(missing_ok=True)
    out.print(f"{target}: {requests} requests, {target.stat().st_size} bytes")
    return 0


def _erase(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from core.domain import ErasureMode, ErasureReason
    from core.settings import get_settings
    from core.texts import t
    from db.models import User
    from db.session import session_scope
    from workers import outbox, uploads
    from workers.outbox import Replies
    from workers.privacy.erasure import erase

    mode = ErasureMode(get_settings().erasure_mode)
    if not args.yes and not Confirm.ask(
        f"Erase user {args.telegram_id} ({mode.value})? This cannot be undone", console=err
    ):
        err.print("nothing erased")
        return 1
    with session_scope() as session:
        user = session.scalars(select(User).where(User.telegram_id == args.telegram_id)).first()
        lang = user.language if user is not None else None
        counts = erase(session, args.telegram_id, reason=ErasureReason.ADMIN, mode=mode)
        ids: list[int] = []
        if lang is not None:
            replies = Replies.for_job(session, f"erasure:{uuid.uuid4()}")
            replies.message(
                args.telegram_id, t("privacy.erased", lang), **{uploads.FORGET_AFTER_SEND: True}
            )
            session.flush()
            ids = [row.id for row in replies.rows]
    if ids:
        outbox.deliver(ids)
    table = Table(title=f"Erased {args.telegram_id} ({mode.value})", title_justify="left")
    table.add_column("kind")
    table.add_column("rows", justify="right")
    for kind, n in sorted(counts.items()):
        table.add_row(kind, str(n))
    out.print(table)
    if not counts.get("profile"):
        err.print("no profile had that Telegram id (never seen, or erased before)")
    return 0


def _audit(_: argparse.Namespace) -> int:
    from sqlalchemy import select

    from db.models import ErasureAudit
    from db.session import session_scope

    table = Table(title="Erasures", title_justify="left")
    for column in ("id", "erased at (UTC)", "reason", "mode", "rows touched"):
        table.add_column(column)
    with session_scope() as session:
        for row in session.scalars(select(ErasureAudit).order_by(ErasureAudit.id)):
            touched = ", ".join(f"{k} {v}" for k, v in sorted(row.counts.items()) if v)
            table.add_row(
                str(row.id),
                row.erased_at.strftime("%Y-%m-%d %H:%M:%S"),
                row.reason,
                row.mode,
                touched or "nothing",
            )
    out.print(table)
    return 0
