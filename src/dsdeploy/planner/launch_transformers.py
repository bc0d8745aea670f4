"""The transformers engine's launch: which device, the longest request, how many run at once,
and the KV cache and batch size its continuous batching gets, from the checkpoint's shape.

Weights stay in the checkpoint's dtype (bf16 on a GPU for a float32 checkpoint); the KV
cache is counted as the planner counts it for the other engines (``kv_bytes_per_token``:
transformers 5.23 also caches DeepSeek's MLA as the compressed latent plus the rotary key).
"""

from __future__ import annotations

from dataclasses import dataclass

from dsdeploy.errors import ConfigError
from dsdeploy.model.architecture import Architecture
from dsdeploy.planner.kv_layout import kv_bytes_per_token
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.planner.memory import GIB
from dsdeploy.planner.placement import RAM_RESERVE, Machine

DEFAULT_CTX = 4096
DEFAULT_SEQS = 4
MAX_BATCH_TOKENS = 2048
"""Tokens in one forward pass (prompt chunks and decode steps together): bounds the
activations, which grow with it, not the number of requests."""
RUNTIME_BYTES = GIB // 2
"""Python, torch and the tokenizer around the weights: an allowance, not a measurement."""


@dataclass(frozen=True)
class TransformersLaunch:
    plan: LaunchPlan
    device: str
    """``cuda`` (one GPU) or ``cpu``."""
    dtype: str
    """``auto`` (the checkpoint's) or ``bfloat16`` (float32 weights on a GPU)."""
    kv_tokens: int
    max_batch_tokens: int
    planned_bytes: int
    """Weights, KV cache and runtime: what the engine takes from RAM (or the GPU)."""


def plan_transformers_serving(
    arch: Architecture,
    weight_bytes: int,
    float32_weights: bool,
    machine: Machine,
    *,
    ctx_size: int | None = None,
    parallel: int | None = None,
    threads: int | None = None,
) -> TransformersLaunch:
    """Raises ``ConfigError`` when the weights and the asked context do not fit."""
    gpu = machine.gpu_count > 0
    halve = gpu and float32_weights  # a GPU computes in bf16; the CPU keeps float32
    weights = weight_bytes // 2 if halve else weight_bytes
    ctx = ctx_size or min(arch.max_positions or DEFAULT_CTX, DEFAULT_CTX)
    seqs = parallel or DEFAULT_SEQS
    kv_tokens = ctx * seqs
    dtype_bytes = 4 if float32_weights and not gpu else 2
    kv = int(kv_tokens * kv_bytes_per_token(arch, dtype_bytes))
    needed = weights + kv + RUNTIME_BYTES
    room = machine.gpu_memory if gpu else machine.ram_available - RAM_RESERVE
    if needed > room:
        raise ConfigError(
            f"the transformers engine needs {needed / GIB:.1f} GiB (weights {weights / GIB:.1f}, "
            f"KV cache {kv / GIB:.1f} for {seqs} × {ctx} tokens) and "
            f"{'the GPU' if gpu else 'RAM'} has {room / GIB:.1f} GiB: lower --ctx-size or "
            "--parallel, or serve a GGUF with --engine llama.cpp"
        )
    plan = LaunchPlan(threads or machine.physical_cores, ctx_per_slot=ctx, parallel=seqs)
    return TransformersLaunch(
        plan,
        device="cuda" if gpu else "cpu",
        dtype="bfloat16" if halve else "auto",
        kv_tokens=kv_tokens,
        max_batch_tokens=min(kv_tokens, MAX_BATCH_TOKENS),
        planned_bytes=needed,
    )
