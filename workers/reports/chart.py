"""The chart of an admin report: requests created and done per day, and the open backlog.

Rendered with matplotlib's object API on the Agg canvas, never pyplot: pyplot keeps global
figure state (a leak and a race in a threaded Celery worker) and may pick a GUI backend.
matplotlib is imported inside `render_chart`, so workers that never draw do not pay for it.
"""

from __future__ import annotations

import datetime
import math
import pathlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Pixels = inches x dpi; a fixed dpi keeps the size exact (no bbox_inches="tight", which crops).
WIDTH_PX, HEIGHT_PX, DPI = 1200, 700, 100

# Okabe-Ito colours, distinguishable with the common kinds of colour blindness.
CREATED_COLOUR = "#0072B2"  # blue
DONE_COLOUR = "#009E73"  # bluish green
BACKLOG_COLOUR = "#D55E00"  # vermillion
GRID_COLOUR = "#DDDDDD"
TEXT_COLOUR = "#333333"

TITLE_PT, LABEL_PT, TICK_PT = 18, 15, 13
MAX_DATE_LABELS = 16  # "22.11" at 13 pt is ~45 px wide; 16 of them leave gaps across ~1000 px
TICK_STEPS = (1, 2, 7, 14, 28)  # days: every day, every other day, then whole weeks
MIN_SLOTS = 7  # the narrowest x axis, in days

# matplotlib shares caches (fonts, text layout) between figures; reports are rare, so
# serialising the rendering costs nothing and rules out races between worker threads.
_render_lock = threading.Lock()


@dataclass(frozen=True)
class DayPoint:
    day: datetime.date
    created: int  # requests created that day
    done: int  # requests done that day
    backlog: int  # requests open at the end of that day


@dataclass(frozen=True)
class ChartLabels:
    """The words on the chart, so a caller can pass the admin's language."""

    created: str = "Created"
    done: str = "Done"
    backlog: str = "Open backlog"
    per_day: str = "Requests per day"


def render_chart(
    points: Sequence[DayPoint],
    title: str,
    path: pathlib.Path,
    *,
    labels: ChartLabels | None = None,
) -> None:
    """Write a PNG (1200x700 px) of created and done per day with the open backlog.

    One point per day is expected (the caller fills quiet days with zeros); x is the calendar,
    so a missing day shows as a gap rather than silently joining its neighbours.
    The bytes are the same for the same input (no timestamp or version in the PNG).
    """
    if not points:
        raise ValueError("a chart needs at least one day")
    words = labels or ChartLabels()
    points = sorted(points, key=lambda p: p.day)  # the ticks and the span assume date order

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _render_lock:
        fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)  # attaches itself to the figure; savefig then draws with Agg
        _draw(fig, points, title, words)
        # Software would embed the matplotlib version; dropping it makes the bytes reproducible.
        fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def _draw(fig: Figure, points: Sequence[DayPoint], title: str, words: ChartLabels) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    days = [p.day.toordinal() for p in points]
    bars = fig.add_subplot()
    # The backlog is a stock, often many times a day's flow: on the bars' axis it would
    # flatten them, so it gets its own axis on the right, in its own colour.
    line = bars.twinx()

    few = len(points) <= 31
    # A day's pair fills 80% of its slot; over many days the pairs need a wider gap to part.
    width = 0.4 if few else 0.35
    # Bars a few pixels wide, snapped to whole pixels, come out in uneven widths and gaps;
    # wide ones are crisper snapped (unsnapped, a faint seam shows between a pair).
    snap = None if few else False
    for shift, values, colour, label in (
        (-width / 2, [p.created for p in points], CREATED_COLOUR, words.created),
        (width / 2, [p.done for p in points], DONE_COLOUR, words.done),
    ):
        bars.bar([d + shift for d in days], values, width, color=colour, label=label, snap=snap)
    # Markers help count the days of up to a month; over longer spans they are clutter.
    line.plot(
        days,
        [p.backlog for p in points],
        color=BACKLOG_COLOUR,
        linewidth=2.5,
        marker="o" if few else None,
        markersize=6,
        label=words.backlog,
    )

    flows = max(max(p.created, p.done) for p in points)
    stock = max(p.backlog for p in points)
    _count_axis(bars, flows, words.per_day, TEXT_COLOUR)
    _count_axis(line, stock, words.backlog, BACKLOG_COLOUR)

    ticks = _date_ticks(days)
    # A week wide at least: one or two days would otherwise be drawn as slabs across the chart.
    pad = max(0.6, (MIN_SLOTS - (days[-1] - days[0] + 1)) / 2 + 0.5)
    bars.set_xlim(days[0] - pad, days[-1] + pad)
    bars.xaxis.set_major_locator(FixedLocator(ticks))
    bars.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: datetime.date.fromordinal(round(x)).strftime("%d.%m"))
    )
    # Every day gets a small tick when only some are labelled, so days can still be counted.
    bars.xaxis.set_minor_locator(FixedLocator(days) if ticks != days else NullLocator())
    bars.tick_params(axis="x", labelsize=TICK_PT, colors=TEXT_COLOUR)
    # The year is not in the tick labels; the span under the axis gives it once.
    first, last = points[0].day, points[-1].day
    span = f"{first:%d.%m.%Y}" if first == last else f"{first:%d.%m.%Y} – {last:%d.%m.%Y}"
    bars.set_xlabel(span, fontsize=LABEL_PT, color=TEXT_COLOUR)

    # Only the bars' axis draws a grid: two sets of lines that do not meet would be noise.
    bars.grid(axis="y", color=GRID_COLOUR, linewidth=1, zorder=0)
    bars.set_axisbelow(True)
    for ax in (bars, line):
        ax.spines["top"].set_visible(False)
    bars.spines["right"].set_visible(False)
    line.spines["left"].set_visible(False)
    line.spines["right"].set_color(BACKLOG_COLOUR)

    fig.suptitle(title, fontsize=TITLE_PT, color=TEXT_COLOUR, fontweight="bold")
    handles = [*bars.get_legend_handles_labels()[0], *line.get_legend_handles_labels()[0]]
    # Above the plot, under the title: inside it would cover the data of some day.
    line.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=3,
        frameon=False,
        fontsize=LABEL_PT,
    )


def _count_axis(ax: Axes, top: int, label: str, colour: str) -> None:
    """A y axis of whole requests from zero, with thousands grouped."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # 1-2-5 steps read better than matplotlib's default 2.5 or 8 (800, 1600, 2400...).
    locator = MaxNLocator(nbins=6, steps=[1, 2, 5, 10], integer=True, min_n_ticks=2)
    # End the axis on a tick above the data, so the highest value can be read off; zero data
    # would give an empty range, and a 0..1 axis still reads as "none".
    ceiling = max(top * 1.05, 1)
    ax.set_ylim(
        0, min((t for t in locator.tick_values(0, ceiling) if t >= ceiling), default=ceiling)
    )
    ax.yaxis.set_major_locator(locator)
    # A narrow no-break space groups thousands in either language ("12 500").
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{round(y):,}".replace(",", "\u202f")))
    ax.set_ylabel(label, fontsize=LABEL_PT, color=colour)
    ax.tick_params(axis="y", labelsize=TICK_PT, colors=colour)


def _date_ticks(days: list[int]) -> list[int]:
    """Labelled days: counted back from the last day (the one a report is about), so it
    always has a label, at the smallest step that keeps the labels apart."""
    span = days[-1] - days[0]
    step = next(
        (s for s in TICK_STEPS if span // s + 1 <= MAX_DATE_LABELS),
        math.ceil(span / (MAX_DATE_LABELS - 1)),
    )
    return sorted(d for d in range(days[-1], days[0] - 1, -step))
