"""The training plan shown before a run, and the refusal of one that would not fit."""

from __future__ import annotations

from dsdeploy.errors import TrainingDoesNotFit
from dsdeploy.planner.training import (
    ModelShape,
    RunShape,
    TrainingMemory,
    nearest_fitting,
    training_memory,
)


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def describe(memory: TrainingMemory) -> str:
    return (
        f"{mib(memory.total)} = weights {mib(memory.weights)} + LoRA with gradients and "
        f"AdamW states {mib(memory.lora)} + activations {mib(memory.activations)} + logits "
        f"{mib(memory.logits)} + runtime {mib(memory.runtime)}"
    )


def check_fits(model: ModelShape, run: RunShape, available: int) -> TrainingMemory:
    """The run's memory; ``TrainingDoesNotFit`` naming the nearest run that fits, if any."""
    memory = training_memory(model, run)
    if memory.total <= available:
        return memory
    nearest = nearest_fitting(model, run, available)
    need = f"training needs {mib(memory.total)} but {mib(available)} is free"
    if nearest is None:
        raise TrainingDoesNotFit(
            f"{need}, and no smaller batch or sequence length fits; free memory or fine-tune "
            "a smaller model"
        )
    fits = training_memory(model, nearest).total
    raise TrainingDoesNotFit(
        f"{need}; try --batch {nearest.batch} --seq-len {nearest.seq_len} ({mib(fits)})"
    )
