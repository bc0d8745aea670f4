"""The vLLM launch for a model: tensor parallel over a node's GPUs, pipeline parallel over
nodes, the longest request and how many run at once, from the planner's vLLM layout.

A model spread over several nodes is planned as one machine with every node's GPUs (the
KV pool is theirs together), then cut into ``tensor_parallel = GPUs per node`` ×
``pipeline_parallel = nodes``: tensor parallelism needs the GPUs' fast links inside a node,
pipeline stages talk across nodes only once per layer boundary.
"""

from __future__ import annotations

from dataclasses import replace

from dsdeploy.catalog import CatalogEntry
from dsdeploy.errors import ConfigError
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import (
    VLLM_MEMORY_UTILIZATION,
    Choice,
    Plan,
    vllm_choices,
    vllm_plan,
)
from dsdeploy.planner.quants import VLLM_FORMATS, Quant

VLLM_MAX_SEQS = 256
"""vLLM's own default for ``--max-num-seqs``: the most requests one scheduler step holds."""


def plan_vllm_serving(
    entry: CatalogEntry,
    machine: Machine,
    *,
    nodes: int = 1,
    weights: Quant | None = None,
    ctx_size: int | None = None,
    parallel: int | None = None,
) -> tuple[LaunchPlan, Plan]:
    """vLLM's launch on ``nodes`` machines like ``machine``; ``weights`` is the checkpoint's
    own format when the files are fixed (else the best of bf16, FP8, AWQ that fits).
    Raises ``ConfigError`` when vLLM cannot hold the model with a useful context."""
    if nodes < 1:
        raise ConfigError(f"nodes must be at least 1, got {nodes}")
    if not machine.gpu_count:
        raise ConfigError(
            "vLLM needs an NVIDIA GPU; this machine has none: serve with --engine llama.cpp"
        )
    cluster = replace(machine, gpu_count=machine.gpu_count * nodes)
    chosen = vllm_plan(entry, cluster, (weights,) if weights else VLLM_FORMATS)
    if chosen is None:
        where = f"{nodes} node(s) × {machine.gpu_count} × {machine.gpu_name}"
        raise ConfigError(
            f"{entry.name} does not fit {where} under vLLM with room for 4 requests of 8192 "
            "tokens; add nodes, pick a smaller quantization, or serve with --engine llama.cpp"
        )
    plan = vllm_choices(entry, cluster, *chosen)
    layout = plan.vllm
    assert layout is not None
    max_len = layout.max_model_len if ctx_size is None else ctx_size
    if max_len > layout.kv_pool_tokens:
        raise ConfigError(
            f"--ctx-size {max_len} is more than the {layout.kv_pool_tokens:,} tokens of KV "
            f"cache left on the GPUs; lower it to at most {layout.kv_pool_tokens}"
        )
    slots = parallel or max(1, min(VLLM_MAX_SEQS, layout.kv_pool_tokens // max_len))
    plan.choices = [
        split_choice(machine, nodes) if c.what == "tensor parallel" else c for c in plan.choices
    ]
    plan.choices.append(
        Choice("max num seqs", str(slots), "requests decoded together (set by --parallel)")
        if parallel
        else Choice("max num seqs", str(slots), "requests of the longest length the pool holds")
    )
    launch = LaunchPlan(
        threads=machine.physical_cores,
        ctx_per_slot=max_len,
        parallel=slots,
        kv_type="auto",  # the model's own dtype (bf16), as the planner counted it
        gpu_layers=None,
        tensor_parallel=machine.gpu_count,
        pipeline_parallel=nodes,
        gpu_memory_utilization=VLLM_MEMORY_UTILIZATION,
    )
    return launch, plan


def split_choice(machine: Machine, nodes: int) -> Choice:
    if nodes == 1:
        return Choice("tensor parallel", str(machine.gpu_count), "weights split across every GPU")
    return Choice(
        "tensor × pipeline parallel",
        f"{machine.gpu_count} × {nodes}",
        "each node's GPUs share every layer; the layers are cut into one stage per node",
    )
