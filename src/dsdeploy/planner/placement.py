"""Where llama.cpp puts a model on a machine: weights, KV and compute on the GPUs when they
fit, else routed experts to RAM layer by layer (``--n-cpu-moe``), else whole layers to RAM."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsdeploy.model.architecture import Architecture
from dsdeploy.planner import memory
from dsdeploy.planner.kv_layout import kv_cache_bytes
from dsdeploy.planner.quants import Quant

RAM_RESERVE = memory.GIB
"""Left to the OS and other processes; llama.cpp's own --fit keeps the same 1 GiB margin."""


@dataclass(frozen=True)
class Machine:
    ram_available: int
    physical_cores: int
    cpu_bandwidth: float
    gpu_name: str = ""
    gpu_memory: int = 0
    gpu_count: int = 0
    gpu_bandwidth: float = 0.0


@dataclass(frozen=True)
class LlamaLayout:
    """One candidate llama.cpp launch and what it costs where."""

    quant: Quant
    ctx_per_slot: int
    slots: int
    kv_type: str
    gpu_bytes: int
    ram_bytes: int
    gpu_layers: int
    cpu_moe_layers: int
    breakdown: dict[str, int]
    kv_parts: dict[str, int]
    """The KV cache by part (keys, values, indexer keys, compressed keys, compressor state)."""


def llama_layout(
    arch: Architecture,
    params: int,
    quant: Quant,
    ctx: int,
    slots: int,
    kv_type: str,
    machine: Machine,
) -> LlamaLayout:
    """Place weights, KV and compute: all on GPU if they fit, else routed experts to RAM
    layer by layer (``--n-cpu-moe``), else whole layers to RAM."""
    total_ctx = ctx * slots
    weights = memory.weights_bytes(params, quant.bits_per_weight)
    cache = kv_cache_bytes(arch, total_ctx, slots, kv_type, kv_type)
    kv = cache.total
    compute = memory.compute_buffer_bytes(arch, total_ctx, slots, flash_attention=True)
    output = memory.output_buffer_bytes(arch, slots)
    runtime = memory.llamacpp_runtime_bytes(arch.vocab)
    breakdown = {
        "weights": weights,
        "kv_cache": kv,
        "compute": compute,
        "output": output,
        "runtime": runtime,
    }

    def place(gpu: int, ram: int, gpu_layers: int, cpu_moe: int = 0) -> LlamaLayout:
        return LlamaLayout(
            quant, ctx, slots, kv_type, gpu, ram, gpu_layers, cpu_moe, breakdown, cache.parts()
        )

    if not machine.gpu_count:
        return place(0, sum(breakdown.values()), 0)
    vram = machine.gpu_count * (machine.gpu_memory - memory.CUDA_CONTEXT_BYTES)
    on_gpu = weights + kv + compute
    if on_gpu <= vram:
        return place(on_gpu, output + runtime, arch.n_layers)
    if arch.is_moe:
        expert_layer = memory.weights_bytes(
            arch.n_routed_experts * arch.expert_params, quant.bits_per_weight
        )
        cpu_moe = min(arch.n_moe_layers, math.ceil((on_gpu - vram) / expert_layer))
        moved = cpu_moe * expert_layer
        return place(on_gpu - moved, output + runtime + moved, arch.n_layers, cpu_moe)
    per_layer = (weights + kv) / arch.n_layers
    gpu_layers = max(0, int((vram - compute) // per_layer))
    moved = int((arch.n_layers - gpu_layers) * per_layer)
    return place(on_gpu - moved, output + runtime + moved, gpu_layers)


def fits(layout: LlamaLayout, machine: Machine) -> bool:
    ram_ok = layout.ram_bytes <= machine.ram_available - RAM_RESERVE
    vram = machine.gpu_count * (machine.gpu_memory - memory.CUDA_CONTEXT_BYTES)
    return ram_ok and layout.gpu_bytes <= vram


def active_gpu_share(arch: Architecture, layout: LlamaLayout) -> float:
    """Share of a token's weight reads served from VRAM: experts left in RAM are read by
    the CPU (only the routed ones a token picks), and so are layers left on the CPU."""
    if layout.cpu_moe_layers:
        in_ram = layout.cpu_moe_layers * arch.experts_per_token * arch.expert_params
        return 1 - in_ram / arch.active_params
    return layout.gpu_layers / arch.n_layers
