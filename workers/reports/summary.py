"""A report's figures as the admin reads them: the summary message (HTML) and, for the CLI,
rows of a table."""

from __future__ import annotations

from core.domain import EventAction, Priority, Status
from core.texts import Markup, duration, t
from workers.reports.figures import Figures, Spread

# A site with 300 staff: the message names the busiest; the CLI and the CSV have the rest.
STAFF_SHOWN = 10
_STATUS_ORDER = [Status.NEW, Status.ACCEPTED, Status.IN_PROGRESS, Status.REOPENED]
_PRIORITY_ORDER = [Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW]


def title(figures: Figures, lang: str) -> Markup:
    return t("report.title", lang, period=figures.period.label())


def summary_text(figures: Figures, lang: str) -> str:
    f = figures
    lines: list[str] = [
        title(f, lang),
        t(
            "report.moves",
            lang,
            created=f.count(EventAction.CREATED),
            done=f.count(EventAction.DONE),
            rejected=f.count(EventAction.REJECT),
            cancelled=f.count(EventAction.CANCEL),
            reopened=f.count(EventAction.REOPEN),
        ),
        "",
        t("report.open", lang, total=f.open_total),
    ]
    if f.open_total:
        by_status = [
            Markup(f"{t(f'status.{s}', lang)} {f.open_by_status[s]}")
            for s in _STATUS_ORDER
            if f.open_by_status.get(s)
        ]
        by_priority = [
            Markup(f"{t(f'priority.{p}', lang)} {f.open_by_priority[p]}")
            for p in _PRIORITY_ORDER
            if f.open_by_priority.get(p)
        ]
        lines += [
            t("report.by_status", lang, items=Markup(", ".join(by_status))),
            t("report.by_priority", lang, items=Markup(", ".join(by_priority))),
        ]
    lines += [
        t("report.overdue", lang, count=f.overdue),
        "",
        t("report.times", lang),
        _spread("accept", f.to_accept, lang),
        _spread("done", f.to_done, lang),
    ]
    if f.staff:
        lines += ["", t("report.staff", lang)]
        lines += [
            t("report.staff_line", lang, name=s.name, open=s.open_assigned, done=s.completed)
            for s in f.staff[:STAFF_SHOWN]
        ]
        if len(f.staff) > STAFF_SHOWN:
            lines.append(t("report.more", lang, count=len(f.staff) - STAFF_SHOWN))
    if f.top_locations:
        lines += ["", t("report.places", lang)]
        lines += [t("report.place_line", lang, place=p, count=n) for p, n in f.top_locations]
    lines.append("")
    if f.rating_count:
        lines.append(t("report.rating", lang, avg=f"{f.rating_avg:.1f}", count=f.rating_count))
    else:
        lines.append(t("report.no_rating", lang))
    return "\n".join(lines)


def _spread(what: str, spread: Spread, lang: str) -> str:
    if not spread.count:
        return t("report.no_times", lang, what=t(f"report.what.{what}", lang))
    return t(
        f"report.to_{what}",
        lang,
        p50=duration(spread.p50, lang),
        p90=duration(spread.p90, lang),
        count=spread.count,
    )


def table_rows(figures: Figures) -> list[tuple[str, str]]:
    """The summary for a terminal: (figure, value) rows, every staff member included."""
    f, lang = figures, "en"
    rows: list[tuple[str, str]] = [("period", f.period.label())]
    for label, action in (
        ("created", EventAction.CREATED),
        ("done", EventAction.DONE),
        ("rejected", EventAction.REJECT),
        ("cancelled", EventAction.CANCEL),
        ("reopened", EventAction.REOPEN),
    ):
        rows.append((label, str(f.count(action))))
    rows.append(("open now", str(f.open_total)))
    rows += [(f"  status {s.value}", str(f.open_by_status.get(s, 0))) for s in _STATUS_ORDER]
    rows += [(f"  priority {p.value}", str(f.open_by_priority.get(p, 0))) for p in _PRIORITY_ORDER]
    rows.append(("overdue now", str(f.overdue)))
    for name, spread in (("to accept", f.to_accept), ("to done", f.to_done)):
        rows.append((f"{name} (n)", str(spread.count)))
        rows.append((f"{name} median", duration(spread.p50, lang)))
        rows.append((f"{name} p90", duration(spread.p90, lang)))
    rows += [(f"staff {s.name}", f"open {s.open_assigned}, done {s.completed}") for s in f.staff]
    rows += [(f"place {p}", str(n)) for p, n in f.top_locations]
    avg = "—" if f.rating_avg is None else f"{f.rating_avg:.2f}"
    rows.append(("rating", f"{avg} ({f.rating_count})"))
    return rows
