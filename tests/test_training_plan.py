"""The training memory plan: its parts, and the nearest run that fits when one does not."""

from __future__ import annotations

import pytest

from dsdeploy.errors import TrainingDoesNotFit
from dsdeploy.finetune.plan import check_fits
from dsdeploy.planner.training import ModelShape, RunShape, smaller_runs, training_memory

SMOLLM2 = ModelShape(
    params=134_515_008, lora_params=460_800, hidden=576, layers=30, heads=9, vocab=49_152
)
"""SmolLM2-135M-Instruct; LoRA rank 8 on q_proj and v_proj (counted by peft: 460,800)."""


def test_the_parts_add_up_and_lora_counts_weights_gradients_and_two_moments() -> None:
    memory = training_memory(SMOLLM2, RunShape(batch=8, seq_len=128))
    assert memory.weights == SMOLLM2.params * 4
    assert memory.lora == 4 * SMOLLM2.lora_params * 4
    assert memory.logits == 3 * 8 * 128 * SMOLLM2.vocab * 4
    parts = memory.weights + memory.lora + memory.activations + memory.logits + memory.runtime
    assert memory.total == parts


def test_checkpointing_keeps_fewer_activations() -> None:
    run = RunShape(batch=8, seq_len=128)
    kept = training_memory(SMOLLM2, run).activations
    full = training_memory(SMOLLM2, RunShape(8, 128, checkpointing=False)).activations
    assert kept < full / 5


def test_smaller_runs_halve_the_batch_first_then_the_sequence() -> None:
    runs = smaller_runs(RunShape(batch=4, seq_len=128))
    assert [(r.batch, r.seq_len) for r in runs] == [(2, 128), (1, 128), (1, 64), (1, 32)]


def test_a_run_that_does_not_fit_names_the_nearest_that_does() -> None:
    run = RunShape(batch=8, seq_len=128)
    two = training_memory(SMOLLM2, RunShape(batch=2, seq_len=128)).total
    with pytest.raises(TrainingDoesNotFit, match=r"try --batch 2 --seq-len 128"):
        check_fits(SMOLLM2, run, available=two + 1)


def test_a_run_nothing_can_shrink_into_says_so() -> None:
    with pytest.raises(TrainingDoesNotFit, match="no smaller batch or sequence length fits"):
        check_fits(SMOLLM2, RunShape(batch=8, seq_len=128), available=2**20)


def test_a_run_that_fits_is_planned() -> None:
    memory = check_fits(SMOLLM2, RunShape(batch=1, seq_len=64), available=2**40)
    assert memory.total < 2**31
