"""The bench report three ways: a table on the terminal, JSON, and a PNG."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dsdeploy.bench.command import BenchReport
from dsdeploy.bench.stats import Row


def print_report(report: BenchReport, console: Console) -> None:
    workload = report.workload
    caption = (
        f"{workload['prompt']} prompts of {workload['prompt_words']} words, "
        f"{workload['max_tokens']} tokens out, {workload['repetitions']} repetitions"
    )
    latency = Table("target", "conc", title=f"latency, ms: {caption}")
    for measure in ("TTFT", "TPOT", "ITL"):
        for percentile in ("p50", "p90", "p99"):
            latency.add_column(f"{measure} {percentile}", justify="right")
    throughput = Table("target", "conc", title="throughput")
    for heading in ("tok/s per stream", "tok/s total", "± between reps", "req/s", "η", "errors"):
        throughput.add_column(heading, justify="right")
    for row in report.rows:
        spreads = (row.ttft_ms, row.tpot_ms, row.itl_ms)
        latency.add_row(
            row.target,
            str(row.concurrency),
            *(f"{v:.1f}" for p in spreads for v in (p.p50, p.p90, p.p99)),
        )
        throughput.add_row(
            row.target,
            str(row.concurrency),
            f"{row.stream_tokens_per_s:.1f}",
            f"{row.aggregate_tokens_per_s:.1f}",
            f"{row.aggregate_cv:.0%}",
            f"{row.requests_per_s:.2f}",
            "—" if row.efficiency is None else f"{row.efficiency:.2f}",
            str(row.errors),
        )
    console.print(latency)
    console.print(throughput)
    console.print(
        f"memory read bandwidth {report.memory_bandwidth / 1e9:.1f} GB/s "
        f"({report.bandwidth_threads} threads)",
        highlight=False,
    )
    if report.model and report.ceiling_tokens_per_s:
        console.print(
            f"{report.model.name}: {report.model.bytes_per_token / 2**20:.1f} MiB read per "
            f"token → ceiling {report.ceiling_tokens_per_s:.0f} tok/s per stream "
            f"(η = stream tok/s ÷ ceiling)",
            highlight=False,
        )
    if report.gpu_power_w:
        console.print(f"GPU power draw {report.gpu_power_w:.0f} W (mean during the run)")
    before, after = report.machine.load_average_before[0], report.load_average_after[0]
    if report.noisy:
        console.print(
            f"[yellow]noisy machine:[/] load {before:.2f} before, {after:.2f} after, or "
            "repetitions spread over 15%; compare only ratios measured in this run",
            highlight=False,
        )


def write_json(report: BenchReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asdict(report), indent=2, default=lambda v: None)
    path.write_text(text.replace("NaN", "null"))


def plot(report: BenchReport, path: Path) -> None:
    """Throughput and latency against concurrency, one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels: tuple[tuple[str, Callable[[Row], float]], ...] = (
        ("aggregate tokens/s", lambda row: row.aggregate_tokens_per_s),
        ("tokens/s per stream", lambda row: row.stream_tokens_per_s),
        ("TTFT p50 (ms)", lambda row: row.ttft_ms.p50),
    )
    for target in dict.fromkeys(row.target for row in report.rows):
        rows = [row for row in report.rows if row.target == target]
        for axis, (_, value) in zip(axes, panels, strict=True):
            shown = [row for row in rows if not math.isnan(value(row))]
            xs = [row.concurrency for row in shown]
            axis.plot(xs, [value(row) for row in shown], marker="o", label=target)
    if report.ceiling_tokens_per_s:
        axes[1].axhline(report.ceiling_tokens_per_s, color="grey", linestyle="--",
                        label="memory-bandwidth ceiling")  # fmt: skip
    levels = sorted({row.concurrency for row in report.rows})
    for axis, (label, _) in zip(axes, panels, strict=True):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(level) for level in levels])
        axis.set_ylim(bottom=0)
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    model = report.model.name if report.model else "model"
    fig.suptitle(f"{model}: {report.workload['prompt']} prompts, {report.created}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
