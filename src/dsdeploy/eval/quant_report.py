"""A quantization evaluation as a table on the terminal and a PNG of quality against size."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from dsdeploy.eval.quant_results import QuantEval


def print_quant_eval(result: QuantEval, console: Console) -> None:
    ref = result.reference
    table = Table(
        "type", "size MiB", "bits/weight", "PPL", "ΔPPL", "mean KLD", "KLD p99", "same top-1",
        title=f"{result.model}: quality of each quantization against {ref.description}",
        caption=f"reference: {ref.size_bytes / 2**20:.1f} MiB, PPL {ref.perplexity:.3f}; "
        f"text {result.text}; ctx {result.ctx}",
    )  # fmt: skip
    for row in result.rows:
        table.add_row(
            row.file_type,
            f"{row.size_bytes / 2**20:.1f}",
            f"{row.bits_per_weight:.2f}",
            f"{row.perplexity:.3f}",
            f"{row.perplexity_delta:+.3f}",
            f"{row.mean_kld:.4f} ± {row.mean_kld_error:.4f}",
            f"{row.kld_p99:.3f}",
            f"{row.same_top_p:.1f}%",
        )
    console.print(table)
    console.print(f"recommended: {result.recommendation}", highlight=False)


def plot_quant_eval(result: QuantEval, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (kld_axis, top_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    sizes = [row.size_bytes / 2**20 for row in result.rows]
    kld_axis.plot(sizes, [row.mean_kld for row in result.rows], "o")
    top_axis.plot(sizes, [row.same_top_p for row in result.rows], "o")
    for row, size in zip(result.rows, sizes, strict=True):
        bold = "bold" if row.file_type == result.recommended else "normal"
        kld_axis.annotate(row.file_type, (size, row.mean_kld), fontweight=bold,
                          textcoords="offset points", xytext=(4, 4))  # fmt: skip
        top_axis.annotate(row.file_type, (size, row.same_top_p), fontweight=bold,
                          textcoords="offset points", xytext=(4, 4))  # fmt: skip
    kld_axis.set_yscale("log")
    kld_axis.set_ylabel("mean KL divergence from the reference (nats/token)")
    top_axis.set_ylabel("same top-1 token as the reference (%)")
    for axis in (kld_axis, top_axis):
        axis.set_xlabel("file size (MiB)")
        axis.grid(alpha=0.3)
    fig.suptitle(f"{result.model}: quantization quality vs size ({result.reference.description})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
