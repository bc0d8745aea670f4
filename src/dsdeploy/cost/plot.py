"""Cumulative cost against months, one line per option: where the lines cross is where
buying pays off."""

from __future__ import annotations

from pathlib import Path

from dsdeploy.cost.breakeven import cumulative
from dsdeploy.cost.command import CostReport


def plot(report: CostReport, months: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axis = plt.subplots(figsize=(9, 5.5))
    xs = list(range(1, months + 1))
    for name, ys in cumulative(report.options, months).items():
        axis.plot(xs, ys[1:], label=name, linestyle="-" if name.startswith("buy") else "--")
    axis.set_yscale("log")  # an API's bill and a GPU's rent differ by orders of magnitude
    axis.set_xlabel("months")
    axis.set_ylabel(f"spent by the end of the month ({report.currency}, log scale)")
    axis.set_xlim(1, months)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    work = report.workload
    axis.set_title(
        f"{report.model}: {work.input_tokens / 1e6:.3g}M input + "
        f"{work.output_tokens / 1e6:.3g}M output tokens a month"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
