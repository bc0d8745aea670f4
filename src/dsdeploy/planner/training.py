"""Memory a LoRA training run needs on the CPU (fp32), and the nearest run that fits.

Pure numbers: the caller counts the model's parameters (on torch's meta device, so nothing
is loaded) and this module adds the four parts the issue names:

- weights: every base parameter in fp32, frozen (no gradient, no optimizer state);
- LoRA: the trainable A and B matrices, their gradients and AdamW's two moments (4 copies);
- activations: with gradient checkpointing only each layer's input is kept for the backward
  pass (b·s·h floats a layer) plus one layer recomputed in full; the per-layer count is
  Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
  eq. 1: s·b·h·(34 + 5·a·s/h) bytes at 16 bits, doubled here for fp32);
- logits: b·s·vocab floats three times over (logits, their fp32 log-softmax, its gradient),
  which for a small model with a 49k vocabulary is as large as all the weights;
- a fixed runtime (the Python interpreter, torch and transformers, their allocator), taken
  from a measurement on this kind of machine (see docs/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FLOAT = 4
RUNTIME_BYTES = 700 * 2**20
"""RSS of a Python process with torch, transformers and peft imported and nothing loaded
(measured: ~450 MiB) plus the allocator's slack around freed activations."""


@dataclass(frozen=True)
class ModelShape:
    params: int
    lora_params: int
    hidden: int
    layers: int
    heads: int
    vocab: int


@dataclass(frozen=True)
class RunShape:
    batch: int
    seq_len: int
    checkpointing: bool = True


@dataclass(frozen=True)
class TrainingMemory:
    weights: int
    lora: int
    activations: int
    logits: int
    runtime: int

    @property
    def total(self) -> int:
        return self.weights + self.lora + self.activations + self.logits + self.runtime


def layer_activation_bytes(model: ModelShape, run: RunShape) -> int:
    """One transformer layer's saved activations, fp32 (Korthikanti et al. eq. 1 × 2)."""
    s, b, h, a = run.seq_len, run.batch, model.hidden, model.heads
    return 2 * s * b * h * (34 + 5 * a * s // h)


def training_memory(model: ModelShape, run: RunShape) -> TrainingMemory:
    tokens = run.batch * run.seq_len
    layer = layer_activation_bytes(model, run)
    if run.checkpointing:
        activations = model.layers * tokens * model.hidden * FLOAT + layer
    else:
        activations = model.layers * layer
    return TrainingMemory(
        weights=model.params * FLOAT,
        lora=4 * model.lora_params * FLOAT,
        activations=activations,
        logits=3 * tokens * model.vocab * FLOAT,
        runtime=RUNTIME_BYTES,
    )


def smaller_runs(run: RunShape) -> list[RunShape]:
    """Runs to try in order when one does not fit: halve the batch to 1 first (the same
    data, more steps), then halve the sequence length down to 32 tokens (longer examples
    are cut)."""
    runs = []
    batch = run.batch
    while batch > 1:
        batch //= 2
        runs.append(replace(run, batch=batch))
    seq = run.seq_len
    while seq > 32:
        seq //= 2
        runs.append(replace(run, batch=1, seq_len=seq))
    return runs


def nearest_fitting(model: ModelShape, run: RunShape, available: int) -> RunShape | None:
    """The first of ``smaller_runs`` that fits ``available`` bytes, or None."""
    return next(
        (r for r in smaller_runs(run) if training_memory(model, r).total <= available), None
    )
