"""The loss curve: training loss per step and validation loss per check, the best step
marked, so early stopping and over-fitting can be seen at a glance."""

from __future__ import annotations

from pathlib import Path

from dsdeploy.finetune.train import History


def plot_losses(history: History, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axis = plt.subplots(figsize=(8, 4.5))
    if history.train:
        steps, losses = zip(*history.train, strict=True)
        axis.plot(steps, losses, label="training", alpha=0.6)
    if history.validation:
        steps, losses = zip(*history.validation, strict=True)
        axis.plot(steps, losses, "o-", label="validation")
        axis.axvline(history.best_step, linestyle=":", color="grey", label="best (kept)")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (cross-entropy per answer token)")
    axis.set_title(title)
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
