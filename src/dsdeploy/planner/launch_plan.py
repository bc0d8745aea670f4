"""The engine-neutral launch plan: what the planner chose for one model, which each engine's
adapter turns into its own flags (llama.cpp: ``--parallel``, ``--ctx-size`` …)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LaunchPlan:
    threads: int
    ctx_per_slot: int
    parallel: int
    """Requests decoded at once (slots)."""
    kv_type: str = "f16"
    gpu_layers: int | None = None
    """None: no GPU in the plan, the engine's default stands."""
    cpu_moe_layers: int = 0
    """Layers whose routed experts stay in RAM (MoE models that do not fit the GPUs)."""
