"""What a soak test reduces its samples to: memory growth as a least-squares slope, and
latency percentiles per time window with the drift of the tail from first window to last.

A leak shows as a steady slope once warm-up is over (allocator pools, caches and the
engine's KV pages are filled early), so the slope is fitted over the run's second half; a
few noisy samples move a least-squares fit far less than a first-versus-last difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIB = 2**20
MIN_POINTS = 5
"""Fewer samples than this give no slope: a line through a handful of points is noise."""


def slope_per_hour(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of ``values`` per hour; None for too few points or no time span."""
    if len(times_s) < MIN_POINTS or max(times_s) == min(times_s):
        return None
    slope, _ = np.polyfit(np.asarray(times_s) / 3600, np.asarray(values), 1)
    return float(slope)


def second_half(
    times_s: Sequence[float], values: Sequence[float], end_s: float
) -> tuple[list[float], list[float]]:
    """The samples taken after half of the run (``end_s`` long): past warm-up."""
    kept = [(t, v) for t, v in zip(times_s, values, strict=True) if t >= end_s / 2]
    return [t for t, _ in kept], [v for _, v in kept]


@dataclass(frozen=True)
class Window:
    start_s: float
    requests: int
    """Requests that ended in the window, whatever their outcome."""
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    """Of the successful requests timed in the window (None when there were none)."""


@dataclass(frozen=True)
class Outcome:
    end_s: float
    latency_s: float
    error: bool
    timed: bool
    """Counted in the latency percentiles (a success that did not wait for a model load)."""


def windows(outcomes: Sequence[Outcome], length_s: float, end_s: float) -> list[Window]:
    """Consecutive windows of ``length_s`` covering ``[0, end_s)``."""
    count = max(1, int(np.ceil(end_s / length_s)))
    found = []
    for index in range(count):
        start = index * length_s
        inside = [o for o in outcomes if start <= o.end_s < start + length_s]
        timed = [o.latency_s * 1000 for o in inside if o.timed]
        p50, p99 = np.percentile(timed, [50, 99]) if timed else (None, None)
        found.append(
            Window(
                start_s=start,
                requests=len(inside),
                errors=sum(o.error for o in inside),
                p50_ms=None if p50 is None else float(p50),
                p99_ms=None if p99 is None else float(p99),
            )
        )
    return found


def p99_drift(found: Sequence[Window]) -> float | None:
    """How much the last timed window's p99 differs from the first's, as a fraction."""
    timed = [w.p99_ms for w in found if w.p99_ms is not None]
    if len(timed) < 2 or timed[0] == 0:
        return None
    return (timed[-1] - timed[0]) / timed[0]
