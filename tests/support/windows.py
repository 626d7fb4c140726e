"""Counting events in sliding windows (rate-limit tests)."""

from __future__ import annotations


def busiest(times: list[float], window: float = 1.0) -> int:
    """The most events in any half-open window [t, t + window)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
