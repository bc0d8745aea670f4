"""Reduce trials to one row per (target, concurrency): latency percentiles, throughput and
the decode efficiency against the machine's memory-bandwidth ceiling."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from dsdeploy.bench.loadgen import Trial

NOISY_CV = 0.15
"""Runs on a shared machine vary ±15% minute to minute; more than that between repetitions
means the figures are not to be trusted."""


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: list[float], scale: float = 1000.0) -> Percentiles:
        """Milliseconds by default; NaN when there is nothing to measure."""
        if not values:
            return cls(float("nan"), float("nan"), float("nan"))
        p50, p90, p99 = np.percentile(np.asarray(values) * scale, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99))


@dataclass(frozen=True)
class Row:
    target: str
    concurrency: int
    repetitions: int
    requests: int
    errors: int
    prompt_tokens: float
    ttft_ms: Percentiles
    tpot_ms: Percentiles
    itl_ms: Percentiles
    stream_tokens_per_s: float
    """Median decode rate one stream sees (1 / TPOT)."""
    aggregate_tokens_per_s: float
    """Median over repetitions of all streams' tokens ÷ wall time."""
    aggregate_cv: float
    """Spread of the aggregate rate between repetitions (standard deviation ÷ mean)."""
    requests_per_s: float
    efficiency: float | None
    """η: the stream's decode rate ÷ the memory-bound ceiling (bandwidth ÷ bytes per token).
    Each decode step reads the weights once for all the streams in the batch, so the
    per-stream rate is the one the ceiling bounds, at any concurrency."""


def summarize(trials: list[Trial], ceiling: float | None) -> list[Row]:
    rows = []
    for target, concurrency in sorted({(t.target, t.concurrency) for t in trials}):
        group = [t for t in trials if (t.target, t.concurrency) == (target, concurrency)]
        results = [r for t in group for r in t.results]
        rates = [t.tokens_per_s for t in group if t.results]
        stream_rate = statistics.median(1 / r.tpot_s for r in results) if results else 0.0
        rows.append(
            Row(
                target=target,
                concurrency=concurrency,
                repetitions=len(group),
                requests=len(results),
                errors=sum(len(t.errors) for t in group),
                prompt_tokens=statistics.median(r.prompt_tokens for r in results)
                if results
                else 0.0,
                ttft_ms=Percentiles.of([r.ttft_s for r in results]),
                tpot_ms=Percentiles.of([r.tpot_s for r in results]),
                itl_ms=Percentiles.of([gap for r in results for gap in r.inter_token_s]),
                stream_tokens_per_s=stream_rate,
                aggregate_tokens_per_s=statistics.median(rates) if rates else 0.0,
                aggregate_cv=statistics.pstdev(rates) / statistics.mean(rates)
                if len(rates) > 1
                else 0.0,
                requests_per_s=statistics.median(t.requests_per_s for t in group),
                efficiency=stream_rate / ceiling if ceiling and results else None,
            )
        )
    return rows
