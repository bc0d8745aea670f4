"""The engine-neutral launch plan: what the planner chose for one model, which each engine's
adapter turns into its own flags (llama.cpp: ``--parallel``, ``--ctx-size`` …; vLLM:
``--max-num-seqs``, ``--max-model-len``, ``--tensor-parallel-size`` …)."""

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
    tensor_parallel: int = 1
    """GPUs each layer is split across (vLLM: the GPUs of one node)."""
    pipeline_parallel: int = 1
    """Stages the layers are cut into (vLLM: one per node when the model spans nodes)."""
    prompt_cache_mib: int = 0
    """Host memory llama-server may keep finished prompts' state in (``--cache-ram``); 0:
    none is kept."""
    gpu_memory_utilization: float | None = None
    """Share of each GPU's memory the engine may take (vLLM); None: the engine's default."""
