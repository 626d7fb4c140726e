"""`zavhoz privacy export|erase|audit`: for requests that come by other channels (email,
paper). Export writes the same JSON the bot sends; erase runs the bot's erasure (reason
"admin") and tells the user, as /forget_me does; audit lists what erasures ran."""

from __future__ import annotations

import argparse
import tempfile
import uuid
from datetime import datetime
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
    from db.models import ErasureAudit, User
    from db.session import session_scope
    from workers import outbox
    from workers.outbox import Replies
    from workers.privacy import erasure
    from workers.privacy.handlers import erase_then_tell

    mode = ErasureMode(get_settings().erasure_mode)
    if not args.yes and not Confirm.ask(
        f"Erase user {args.telegram_id} ({mode.value})? This cannot be undone", console=err
    ):
        err.print("nothing erased")
        return 1
    with session_scope() as session:
        user = session.scalars(select(User).where(User.telegram_id == args.telegram_id)).first()
        tell = (args.telegram_id, user.language) if user is not None else None
        replies = Replies.for_job(session, f"erasure:{uuid.uuid4()}")
        audit = erase_then_tell(session, replies, args.telegram_id, ErasureReason.ADMIN, tell)
        session.flush()
        audit_id, ids = audit.id, [row.id for row in replies.rows]
    outbox.deliver(ids)
    # The steps here, in this process (a worker's task would do the same).
    with err.status("scrubbing") as status:
        while True:
            with session_scope() as session:
                step = erasure.scrub_step(session, audit_id)
                pending = session.get(ErasureAudit, audit_id).pending  # type: ignore[union-attr]
            if step.done:
                outbox.deliver(step.deliver)
                break
            if pending is not None:
                touched = sum(pending["counts"].values())
                status.update(f"scrubbing: {pending['stage']}, {touched:,} rows so far")
    with session_scope() as session:
        counts = session.get(ErasureAudit, audit_id).counts  # type: ignore[union-attr]
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
    for column in ("id", "erased at (UTC)", "finished", "reason", "mode", "rows touched"):
        table.add_column(column)
    with session_scope() as session:
        for row in session.scalars(select(ErasureAudit).order_by(ErasureAudit.id)):
            touched = ", ".join(f"{k} {v}" for k, v in sorted(row.counts.items()) if v)
            table.add_row(
                str(row.id),
                row.erased_at.strftime("%Y-%m-%d %H:%M:%S"),
                _finished(row.erased_at, row.finished_at),
                row.reason,
                row.mode,
                touched or "nothing",
            )
    out.print(table)
    return 0


def _finished(erased_at: datetime, finished_at: datetime | None) -> str:
    """How long after the unlinking its last step committed ("scrubbing": not yet)."""
    if finished_at is None:
        return "scrubbing"
    return f"+{(finished_at - erased_at).total_seconds():.1f} s"
