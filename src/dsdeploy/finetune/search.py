"""``--search N``: a small Optuna study over learning rate, LoRA rank and alpha within a time
budget. The base is loaded once; each trial wraps it in a fresh adapter, trains it, and is
scored by its best validation loss; the best trial's adapter is the one exported."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.table import Table

from dsdeploy.finetune.export import load_best
from dsdeploy.finetune.run import (
    Outcome,
    Request,
    finish,
    prepare,
    train_prepared,
    with_lora,
    work_dir,
)
from dsdeploy.finetune.train import Hyper, Trained
from dsdeploy.progress import report_console
from dsdeploy.settings import Settings


@dataclass(frozen=True)
class SearchSpace:
    learning_rate: tuple[float, float] = (1e-4, 3e-3)
    """Sampled on a log scale."""
    ranks: tuple[int, ...] = (4, 8, 16)
    alpha_ratios: tuple[int, ...] = (1, 2, 4)
    """alpha = rank × ratio: the adapter's scale alpha / rank is what matters."""


def suggest(trial: Any, space: SearchSpace) -> Hyper:
    rank = trial.suggest_categorical("rank", list(space.ranks))
    ratio = trial.suggest_categorical("alpha_ratio", list(space.alpha_ratios))
    lr = trial.suggest_float("learning_rate", *space.learning_rate, log=True)
    return Hyper(learning_rate=lr, rank=rank, alpha=rank * ratio)


def study_table(rows: list[dict[str, Any]], best: int) -> Table:
    table = Table(title="search: best validation loss per trial")
    for column in ("trial", "learning rate", "rank", "alpha", "val loss", "steps", "seconds"):
        table.add_column(column, justify="right")
    for row in rows:
        mark = " *" if row["trial"] == best else ""
        table.add_row(
            f"{row['trial']}{mark}",
            f"{row['learning_rate']:.2e}",
            str(row["rank"]),
            str(row["alpha"]),
            f"{row['val_loss']:.4f}",
            str(row["steps"]),
            f"{row['seconds']:.0f}",
        )
    return table


def search(
    settings: Settings,
    request: Request,
    space: SearchSpace,
    trials: int,
    budget_s: float,
    console: Console,
) -> Outcome:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prepared = prepare(settings, request, console)
    root = work_dir(settings, prepared)
    rows: list[dict[str, Any]] = []
    kept: dict[str, Any] = {}

    def objective(trial: Any) -> float:
        hyper = suggest(trial, space)
        work = root / f"trial-{trial.number}"
        work.mkdir(parents=True, exist_ok=True)
        peft_model, trained = train_prepared(prepared, hyper, console, work)
        loss = trained.history.best_loss
        rows.append(
            {
                "trial": trial.number,
                **hyper.__dict__,
                "val_loss": loss,
                "steps": trained.history.train[-1][0] if trained.history.train else 0,
                "seconds": trained.history.seconds,
            }
        )
        if not kept or loss < kept["loss"]:
            kept.update(loss=loss, hyper=hyper, trained=trained)
        prepared.model = peft_model.unload()  # the bare base again, for the next trial
        return loss if math.isfinite(loss) else float("inf")

    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=request.schedule.seed)
    )
    study.optimize(objective, n_trials=trials, timeout=budget_s)
    report_console().print(study_table(rows, study.best_trial.number))
    best_hyper: Hyper = kept["hyper"]
    best_trained: Trained = kept["trained"]
    peft_model = with_lora(prepared.model, best_hyper, request)
    load_best(peft_model, best_trained.best)
    prepared.request = replace(request, hyper=best_hyper)
    outcome = finish(settings, prepared, peft_model, best_trained, {"search": rows})
    shutil.rmtree(root, ignore_errors=True)
    return outcome
