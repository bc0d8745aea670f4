"""The soak benchmark's reductions: RSS growth per hour by least squares over the second
half, latency percentiles per window of successful, timed requests, and the p99 drift."""

from __future__ import annotations

import pytest

from dsdeploy.bench.soak_stats import Outcome, p99_drift, second_half, slope_per_hour, windows


def test_a_steady_growth_of_2_per_minute_is_120_per_hour_despite_one_outlier() -> None:
    times = [60.0 * m for m in range(10)]
    values = [100 + 2 * m for m in range(10)]
    assert slope_per_hour(times, values) == pytest.approx(120)
    values[5] += 50  # one noisy sample moves a fit less than a first-vs-last difference
    assert slope_per_hour(times, values) == pytest.approx(120, abs=60)


def test_too_few_points_or_no_time_span_give_no_slope() -> None:
    assert slope_per_hour([0, 1, 2, 3], [1, 2, 3, 4]) is None
    assert slope_per_hour([5] * 6, [1, 2, 3, 4, 5, 6]) is None


def test_only_samples_after_half_the_run_are_kept() -> None:
    assert second_half([0, 40, 50, 90], [1, 2, 3, 4], end_s=100) == ([50, 90], [3, 4])


def test_windows_time_successes_only_and_count_every_request() -> None:
    outcomes = [
        Outcome(1, 0.100, error=False, timed=True),
        Outcome(2, 0.300, error=False, timed=True),
        Outcome(3, 9.000, error=False, timed=False),  # waited for a model load
        Outcome(4, 0.010, error=True, timed=False),
        Outcome(25, 0.200, error=False, timed=True),
    ]
    first, empty, last = windows(outcomes, length_s=10, end_s=30)
    assert (first.requests, first.errors) == (4, 1)
    assert first.p50_ms == pytest.approx(200)
    assert 100 < (first.p99_ms or 0) <= 300
    assert (empty.requests, empty.p50_ms, empty.p99_ms) == (0, None, None)
    assert last.start_s == 20 and last.p99_ms == pytest.approx(200)


def test_p99_drift_compares_the_last_timed_window_with_the_first() -> None:
    outcomes = [Outcome(1, 0.1, False, True), Outcome(25, 0.15, False, True)]
    assert p99_drift(windows(outcomes, 10, 30)) == pytest.approx(0.5)
    assert p99_drift(windows(outcomes[:1], 10, 30)) is None
