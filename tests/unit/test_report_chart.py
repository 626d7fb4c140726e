"""The report chart: a PNG of the exact size for any number of days, the same bytes each time.

The size is read from the IHDR chunk (the first after the signature), so no image library.
"""

from __future__ import annotations

import datetime
import pathlib
import struct
import subprocess
import sys
import threading

import pytest

from workers.reports.chart import DayPoint, render_chart

SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAST = datetime.date(2025, 11, 22)


def days(n: int, *, scale: int = 1, zero: bool = False) -> list[DayPoint]:
    points, backlog = [], 40 * scale
    for i in range(n):
        created = 0 if zero else (7 + i * 5 % 11) * scale
        done = 0 if zero else (6 + i * 3 % 13) * scale
        backlog = 0 if zero else max(0, backlog + created - done)
        points.append(DayPoint(LAST - datetime.timedelta(days=n - 1 - i), created, done, backlog))
    return points


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize(
    "points",
    [days(1), days(14), days(31), days(90), days(14, zero=True), days(31, scale=400)],
    ids=["one-day", "14-days", "31-days", "90-days", "all-zeros", "thousands"],
)
def test_a_png_of_1200_by_700(points: list[DayPoint], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "chart.png"
    render_chart(points, "Requests", path)
    data = path.read_bytes()
    assert png_size(data) == (1200, 700)
    assert data.endswith(b"IEND\xaeB`\x82")  # written to the end


def test_the_same_bytes_each_time_and_no_version_in_them(tmp_path: pathlib.Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    render_chart(days(14), "Заявки", first)
    render_chart(days(14), "Заявки", second)
    assert first.read_bytes() == second.read_bytes()
    assert b"matplotlib" not in first.read_bytes()


def test_threads_draw_their_own_charts(tmp_path: pathlib.Path) -> None:
    """Celery's threaded pool: concurrent charts come out whole and as drawn alone."""
    alone = tmp_path / "alone.png"
    render_chart(days(14), "Requests", alone)
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    threads = [threading.Thread(target=render_chart, args=(days(14), "Requests", p)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(p.read_bytes() == alone.read_bytes() for p in paths)


def test_no_days_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        render_chart([], "Requests", tmp_path / "chart.png")
    assert not (tmp_path / "chart.png").exists()


def test_matplotlib_only_when_drawing_and_never_pyplot(tmp_path: pathlib.Path) -> None:
    """pyplot keeps every figure alive in a global list and may choose a GUI backend; a fresh
    interpreter shows what the module itself imports (other tests may import pyplot)."""
    script = """
import datetime, pathlib, sys
from workers.reports.chart import DayPoint, render_chart
assert "matplotlib" not in sys.modules
render_chart([DayPoint(datetime.date(2025, 11, 22), 3, 2, 9)], "t", pathlib.Path(sys.argv[1]))
assert "matplotlib.pyplot" not in sys.modules
"""
    root = pathlib.Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "c.png")], cwd=root, check=True, timeout=60
    )
