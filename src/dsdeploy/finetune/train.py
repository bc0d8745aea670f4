"""The training loop: AdamW on the LoRA weights only, a validation loss every few steps,
early stopping when it stops improving, and a checkpoint that a killed run resumes from.

A plain loop rather than transformers' ``Trainer``: the run needs exactly these five
things, and each is a few lines here that the tests can reach."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dsdeploy.finetune.encode import Example, collate

CHECKPOINT = "checkpoint.pt"

StepHook = Callable[[int, int, float], None]
"""Told after each step: steps done, steps planned, the step's training loss."""


@dataclass(frozen=True)
class Hyper:
    """What a search varies."""

    learning_rate: float = 1e-3
    rank: int = 8
    alpha: int = 16


@dataclass(frozen=True)
class Schedule:
    steps: int = 200
    batch: int = 8
    seq_len: int = 128
    eval_every: int = 20
    patience: int = 3
    """Validations in a row without a better loss before the run stops."""
    checkpoint_every: int = 20
    seed: int = 0
    gradient_checkpointing: bool = True
    """Recompute each layer's activations in the backward pass: about a third more compute
    for activations that no longer grow with the layer count."""


@dataclass
class History:
    train: list[tuple[int, float]] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0
    best_loss: float = math.inf
    stale: int = 0
    """Validations since the best one."""
    stopped_early: bool = False
    seconds: float = 0.0


@dataclass
class Trained:
    history: History
    best: dict[str, Any]
    """The LoRA weights of the best validation loss."""
    resumed_from: int


def lora_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def mean_loss(model: Any, examples: list[Example], batch: int, pad_id: int) -> float:
    import torch

    model.eval()
    total = tokens = 0.0
    with torch.no_grad():
        for start in range(0, len(examples), batch):
            inputs = collate(examples[start : start + batch], pad_id)
            count = int((inputs["labels"][:, 1:] != -100).sum())
            total += float(model(**inputs).loss) * count
            tokens += count
    model.train()
    return total / max(tokens, 1)


def batches(examples: list[Example], schedule: Schedule, step: int) -> list[Example]:
    """The batch of ``step``: epochs reshuffled by the seed, so a resumed run sees exactly
    the batches the killed one would have."""
    per_epoch = max(1, len(examples) // schedule.batch)
    epoch, index = divmod(step, per_epoch)
    order = list(range(len(examples)))
    random.Random(schedule.seed * 1_000_003 + epoch).shuffle(order)
    picked = order[index * schedule.batch : (index + 1) * schedule.batch]
    return [examples[i] for i in picked]


def save_checkpoint(
    path: Path, step: int, model: Any, optimizer: Any, history: History, best: dict[str, Any]
) -> None:
    """Written beside and renamed over, so a kill mid-write leaves the previous one."""
    import torch

    partial = path.with_suffix(".partial")
    torch.save(
        {
            "step": step,
            "lora": lora_state(model),
            "optimizer": optimizer.state_dict(),
            "history": asdict(history),
            "best": best,
        },
        partial,
    )
    os.replace(partial, path)


def restore(path: Path, model: Any, optimizer: Any) -> tuple[int, History, dict[str, Any]] | None:
    import torch

    if not path.exists():
        return None
    saved = torch.load(path, weights_only=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in saved["lora"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(saved["optimizer"])
    raw = saved["history"]
    history = History(
        **{
            **raw,
            "train": [tuple(t) for t in raw["train"]],
            "validation": [tuple(v) for v in raw["validation"]],
        }
    )
    return int(saved["step"]), history, saved["best"]


def train(
    model: Any,
    train_set: list[Example],
    validation: list[Example],
    hyper: Hyper,
    schedule: Schedule,
    work: Path,
    pad_id: int,
    on_step: StepHook,
) -> Trained:
    """Train ``model`` (a peft model) in place; resumes from ``work``'s checkpoint if any."""
    import torch

    torch.manual_seed(schedule.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hyper.learning_rate, weight_decay=0.0)
    checkpoint = work / CHECKPOINT
    restored = restore(checkpoint, model, optimizer)
    start, history, best = restored if restored else (0, History(), lora_state(model))
    resumed_from = start
    began = time.monotonic() - history.seconds
    model.train()
    step = start
    while step < schedule.steps and not history.stopped_early:
        loss = model(**collate(batches(train_set, schedule, step), pad_id)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        history.train.append((step, loss.item()))
        on_step(step, schedule.steps, loss.item())
        if step % schedule.eval_every == 0 or step == schedule.steps:
            validate(model, validation, schedule, pad_id, step, history, best)
        history.seconds = time.monotonic() - began
        if step % schedule.checkpoint_every == 0 or history.stopped_early:
            save_checkpoint(checkpoint, step, model, optimizer, history, best)
    return Trained(history, best, resumed_from)


def validate(
    model: Any,
    validation: list[Example],
    schedule: Schedule,
    pad_id: int,
    step: int,
    history: History,
    best: dict[str, Any],
) -> None:
    """Note the validation loss; keep the weights of the best; stop after ``patience``
    validations without improvement."""
    loss = mean_loss(model, validation, schedule.batch, pad_id)
    history.validation.append((step, loss))
    if loss < history.best_loss:
        history.best_loss, history.best_step, history.stale = loss, step, 0
        best.clear()
        best.update(lora_state(model))
    else:
        history.stale += 1
        history.stopped_early = history.stale >= schedule.patience
