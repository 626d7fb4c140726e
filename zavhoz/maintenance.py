"""`zavhoz maintenance escalate|consistency|orphans|retention|restore`: the scheduled upkeep
jobs run by hand, under the same one-at-a-time lock as beat's runs, with a summary table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

out = Console()
err = Console(stderr=True)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("maintenance", help="run an upkeep job now (see docs/design.md)")
    jobs = parser.add_subparsers(dest="job", required=True)
    jobs.add_parser("escalate", help="escalate open requests past their SLA")
    consistency = jobs.add_parser("consistency", help="check invariants; --repair fixes")
    consistency.add_argument("--repair", action="store_true")
    consistency.add_argument(
        "--full", action="store_true", help="every request, not only those changed since the last"
    )
    orphans = jobs.add_parser("orphans", help="rows and keys whose owner is gone; --apply")
    orphans.add_argument("--apply", action="store_true", help="back up, then delete")
    jobs.add_parser("retention", help="delete what is past its retention")
    restore = jobs.add_parser("restore", help="put back the rows of an orphans backup")
    restore.add_argument("file", type=Path)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from workers.upkeep.jobs import SKIPPED, run_job

    handlers = {
        "escalate": _escalate,
        "consistency": _consistency,
        "orphans": _orphans,
        "retention": _retention,
        "restore": _restore,
    }
    result: dict[str, Any] = {}

    def work() -> dict[str, Any]:
        result["code"], counts = handlers[args.job](args)
        return {"by_hand": 1, **counts}

    if run_job(f"maintenance.{args.job}", work) == SKIPPED:
        err.print(f"maintenance {args.job}: another run is going (beat's, or another person's)")
        return 3
    code: int = result["code"]
    return code


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _escalate(_: argparse.Namespace) -> tuple[int, dict[str, int]]:
    from workers import outbox
    from workers.upkeep import escalation

    with err.status("looking for requests past their SLA…"):
        count, notices = escalation.escalate()
        sent = outbox.deliver(notices).counts if notices else {}
    table = _table("SLA escalation", "escalated", "notices")
    table.add_row(str(count), ", ".join(f"{k} {v}" for k, v in sent.items()) or "0")
    out.print(table)
    return 0, {"escalated": count}


def _retention(_: argparse.Namespace) -> tuple[int, dict[str, int]]:
    from workers.upkeep import retention

    with err.status("deleting what is past its retention…"):
        counts = retention.prune()
    table = _table("Retention", "kind", "deleted")
    for kind, n in sorted(counts.items()) or [("(nothing)", 0)]:
        table.add_row(kind, str(n))
    out.print(table)
    return 0, counts


def _consistency(args: argparse.Namespace) -> tuple[int, dict[str, int]]:
    from workers.upkeep import consistency

    since = consistency.last_cursor(full=args.full)
    scope = (
        "every request"
        if since is None
        else f"requests changed since {since.at:%Y-%m-%d %H:%M} UTC"
    )
    with err.status(f"checking invariants ({scope})…"):
        check = consistency.repair if args.repair else consistency.check
        report = check(since=since)
    consistency.remember(report)
    out.print(f"Checked: {scope}" + ("" if since is None else " (--full: every request)"))
    table = _table("Consistency", "kind", "found", "repaired", "left")
    kinds = sorted(set(report.found) | set(report.totals) | set(report.repaired))
    for kind in kinds:
        found, fixed, left_n = (report.found, report.repaired, report.totals)
        table.add_row(
            kind, str(found.get(kind, 0)), str(fixed.get(kind, 0)), str(left_n.get(kind, 0))
        )
    if not kinds:
        table.add_row("(all invariants hold)", "0", "0")
    out.print(table)
    left = report.violations  # after --repair: what is still wrong
    if left:
        listing = _table("Violations", "kind", "table", "id", "what is wrong", "repairable")
        for v in left[:200]:
            listing.add_row(
                v.kind, v.table, str(v.row_id), v.detail, "yes" if v.repairable else "no"
            )
        out.print(listing)
    # Non-zero while anything is wrong: a probe, and a cron job that mails on failure.
    return (1 if left else 0), {
        **report.totals,
        **{f"repaired_{k}": n for k, n in report.repaired.items()},
    }


def _orphans(args: argparse.Namespace) -> tuple[int, dict[str, int]]:
    from workers.upkeep import orphans

    if not args.apply:
        with err.status("looking for orphans (dry run)…"):
            found = orphans.scan()
        backup = None
    else:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}"),
            console=err,
        ) as progress:  # fmt: skip
            bars: dict[str, Any] = {}

            def step(kind: str, n: int) -> None:
                if kind not in bars:
                    bars[kind] = progress.add_task(kind, total=None)
                progress.advance(bars[kind], n)

            backup, found = orphans.apply(progress=step)
    title = "Orphans deleted" if args.apply else "Orphans (dry run: nothing changed)"
    table = _table(title, "kind", "count", "sample")
    for item in found:
        table.add_row(item.kind, str(item.count), ", ".join(item.sample))
    if not found:
        table.add_row("(none)", "0", "")
    out.print(table)
    if backup is not None:
        out.print(f"backup: {backup}  (zavhoz maintenance restore {backup})")
    return 0, {item.kind: item.count for item in found}


def _restore(args: argparse.Namespace) -> tuple[int, dict[str, int]]:
    from workers.upkeep import orphans

    with err.status(f"restoring {args.file}…"):
        counts = orphans.restore(args.file)
    table = _table("Restored", "table", "rows")
    for name, n in sorted(counts.items()):
        table.add_row(name, str(n))
    out.print(table)
    return 0, counts
