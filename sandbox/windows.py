"""Counting events in sliding windows: the rate-limit tests and the benchmarks."""

from __future__ import annotations


def busiest(times: list[float], window: float = 1.0) -> int:
    """The most events in any half-open window (t - window, t], as the sandbox counts."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
