"""Choose how to run a model on given hardware — engine, weights, GPU layers, context, slots,
threads, KV type, MoE offload — each choice with its reason, from the memory estimate.

Everything here is decided from numbers passed in (a catalog entry, a ``Machine``), so a
what-if ("8 × H100") plans exactly like the machine the planner runs on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dsdeploy.catalog import CatalogEntry
from dsdeploy.planner import memory
from dsdeploy.planner.kv_layout import kv_bytes_per_token
from dsdeploy.planner.kv_notes import kv_story
from dsdeploy.planner.placement import (
    RAM_RESERVE,
    LlamaLayout,
    Machine,
    active_gpu_share,
    fits,
    llama_layout,
)
from dsdeploy.planner.quants import (
    GGUF_QUANTS,
    VLLM_FORMATS,
    Quant,
    gguf_quant,
    released_fp4_fp8,
)

VLLM_MEMORY_UTILIZATION = 0.9
VLLM_ACTIVATION_BYTES = 2 * memory.GIB
"""Per GPU: vLLM's profiled activation peak and CUDA graphs at default batch sizes (rough)."""
USEFUL_CONTEXT = 8192
SLOT_CHOICES = (4, 2, 1)
CONTEXT_CHOICES = (8192, 4096, 2048)
SPEED_QUANT = "Q4_K_M"
"""The usual speed/quality balance; named when a larger quant was chosen on quality alone."""


@dataclass(frozen=True)
class Choice:
    what: str
    value: str
    why: str


@dataclass(frozen=True)
class VllmLayout:
    """The vLLM launch chosen: weight format, longest request, and the KV pool it leaves."""

    weights: Quant
    max_model_len: int
    kv_pool_tokens: int


@dataclass
class Plan:
    model: str
    engine: str
    fits: bool
    choices: list[Choice] = field(default_factory=list)
    memory: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    decode_tokens_per_s_bound: float = 0.0
    shortfall: int = 0
    """Bytes missing when nothing fits (then the choices are the nearest plan)."""
    scale_out: str = ""
    llama: LlamaLayout | None = None
    """The llama.cpp launch chosen (None for vLLM)."""
    vllm: VllmLayout | None = None
    """The vLLM launch chosen (None for llama.cpp)."""
    kv_parts: dict[str, int] = field(default_factory=dict)
    """llama.cpp's KV cache by part, when it has more than keys and values."""


def candidate_quants(entry: CatalogEntry) -> list[Quant]:
    published = set(entry.quants) or {q.name for q in GGUF_QUANTS}
    return [q for q in GGUF_QUANTS if q.name in published]


def search_llama(entry: CatalogEntry, machine: Machine, ask: Asked) -> list[LlamaLayout]:
    """Candidates best first: quality, then slots, then context, then f16 before q8_0 KV."""
    arch = entry.architecture
    assert arch is not None
    contexts = [min(c, arch.max_positions) for c in ((ask.ctx,) if ask.ctx else ask.contexts)]
    return [
        llama_layout(arch, entry.loaded_params, quant, c, slots, kv, machine)
        for quant in (ask.quants or candidate_quants(entry))
        for slots in ((ask.slots,) if ask.slots else SLOT_CHOICES)
        for c in dict.fromkeys(contexts)
        for kv in ("f16", "q8_0")
    ]


@dataclass(frozen=True)
class Asked:
    """What the user fixed; the planner chooses the rest."""

    ctx: int | None = None
    slots: int | None = None
    quants: tuple[Quant, ...] = ()
    """Weights to choose from (a file already in the store is the only choice)."""
    contexts: tuple[int, ...] = CONTEXT_CHOICES
    allow_vllm: bool = True


def vllm_plan(
    entry: CatalogEntry, machine: Machine, formats: tuple[Quant, ...] = VLLM_FORMATS
) -> tuple[Quant, int] | None:
    """The best vLLM weight format whose weights leave room for a useful context on all GPUs
    (tensor parallel), and the KV tokens its block pool then holds. ``formats``: the ones
    to choose from (a stored checkpoint is the only choice)."""
    arch = entry.architecture
    assert arch is not None
    if not machine.gpu_count:
        return None
    pool = machine.gpu_count * (
        machine.gpu_memory * VLLM_MEMORY_UTILIZATION - VLLM_ACTIVATION_BYTES
    )
    if entry.release_format == "FP4+FP8" and formats == VLLM_FORMATS:
        formats = (released_fp4_fp8(arch),)  # as published, the only format it comes in
    for fmt in formats:
        left = pool - memory.weights_bytes(entry.loaded_params, fmt.bits_per_weight)
        tokens = int(left // kv_bytes_per_token(arch))
        if tokens >= 4 * USEFUL_CONTEXT:
            return fmt, tokens
    return None


def decode_bound(entry: CatalogEntry, quant: Quant, machine: Machine, gpu_share: float) -> float:
    """tokens/s ceiling for one stream: the reads from RAM and from VRAM take their turns,
    so their times add (tensor parallel GPUs read their shares at once)."""
    per_token = memory.bytes_read_per_token(entry.active_params, quant.bits_per_weight)
    seconds = 0.0
    if gpu_share < 1:
        cpu_part = per_token * (1 - gpu_share)
        seconds += 1 / memory.decode_tokens_per_s_bound(machine.cpu_bandwidth, cpu_part)
    if gpu_share > 0:
        bandwidth = machine.gpu_bandwidth * machine.gpu_count
        seconds += 1 / memory.decode_tokens_per_s_bound(bandwidth, per_token * gpu_share)
    return 1 / seconds


def make_plan(entry: CatalogEntry, machine: Machine, ask: Asked | None = None) -> Plan:
    ask = ask or Asked()
    vllm = vllm_plan(entry, machine) if ask.allow_vllm else None
    if vllm is not None:
        return vllm_choices(entry, machine, *vllm)
    candidates = search_llama(entry, machine, ask)
    chosen = next((c for c in candidates if fits(c, machine)), None)
    if chosen is not None:
        return llama_choices(entry, machine, chosen, fits=True)
    smallest = min(candidates, key=lambda c: c.ram_bytes + c.gpu_bytes)
    plan = llama_choices(entry, machine, smallest, fits=False)
    vram = machine.gpu_count * (machine.gpu_memory - memory.CUDA_CONTEXT_BYTES)
    plan.shortfall = max(0, smallest.gpu_bytes - vram) + max(
        0, smallest.ram_bytes - (machine.ram_available - RAM_RESERVE)
    )
    plan.scale_out = scale_out(entry, machine)
    return plan


def scale_out(entry: CatalogEntry, machine: Machine) -> str:
    """What would run it: nodes of this GPU under vLLM, or RAM for experts on CPU."""
    ways = [vllm_fp8_nodes(entry, machine)] if machine.gpu_count else []
    smallest = min(candidate_quants(entry), key=lambda q: q.bits_per_weight)
    ram = memory.weights_bytes(entry.loaded_params, smallest.bits_per_weight)
    ways.append(
        f"llama.cpp {smallest.name} with experts in RAM: about {gib(ram + RAM_RESERVE)} of RAM"
        + (" plus the GPUs for attention and KV" if machine.gpu_count else "")
    )
    return "; or ".join(ways)


def vllm_fp8_nodes(entry: CatalogEntry, machine: Machine) -> str:
    """Nodes of this machine's GPUs that hold FP8 weights and 4 × 8192 tokens of KV."""
    arch = entry.architecture
    assert arch is not None
    fp8 = memory.weights_bytes(entry.loaded_params, 8)
    need = fp8 + 4 * USEFUL_CONTEXT * kv_bytes_per_token(arch)
    per_node = machine.gpu_count * (
        machine.gpu_memory * VLLM_MEMORY_UTILIZATION - VLLM_ACTIVATION_BYTES
    )
    nodes = math.ceil(need / per_node)
    return (
        f"vLLM FP8 on {nodes} node(s) × {machine.gpu_count} × {machine.gpu_name} "
        f"(tensor parallel {machine.gpu_count} × pipeline parallel {nodes}, Ray across nodes)"
    )


def gib(n: float) -> str:
    return f"{n / memory.GIB:.1f} GiB"


def vllm_choices(entry: CatalogEntry, machine: Machine, fmt: Quant, tokens: int) -> Plan:
    arch = entry.architecture
    assert arch is not None
    ctx = min(arch.max_positions, max(USEFUL_CONTEXT, tokens // 16))
    weights = memory.weights_bytes(entry.loaded_params, fmt.bits_per_weight)
    plan = Plan(entry.name, "vllm", True, notes=list(entry.notes))
    plan.choices = [
        Choice(
            "engine",
            "vLLM",
            f"{machine.gpu_count} × {machine.gpu_name} hold the weights "
            f"and a {tokens:,}-token KV pool: paged attention and continuous batching on GPU",
        ),
        Choice("weights", fmt.name, f"best format that leaves room for context ({fmt.quality})"),
        Choice("tensor parallel", str(machine.gpu_count), "weights split across every GPU"),
        Choice(
            "max model len",
            str(ctx),
            "what the KV pool holds for 16 concurrent requests, capped at the trained context",
        ),
        Choice("gpu memory utilization", str(VLLM_MEMORY_UTILIZATION), "vLLM's default"),
    ]
    plan.memory = {
        "weights": weights,
        "kv_pool_tokens": tokens,
        "kv_bytes_per_token": int(kv_bytes_per_token(arch)),
    }
    plan.decode_tokens_per_s_bound = decode_bound(entry, fmt, machine, 1.0)
    plan.vllm = VllmLayout(fmt, ctx, tokens)
    if fmt.nominal_bits < 8:
        plan.warnings.append(
            f"{fmt.name} is 4-bit ({fmt.quality}); 8-bit weights need "
            f"{vllm_fp8_nodes(entry, machine)}"
        )
    return plan


def llama_choices(
    entry: CatalogEntry, machine: Machine, layout: LlamaLayout, *, fits: bool
) -> Plan:
    arch = entry.architecture
    assert arch is not None
    quant = layout.quant
    plan = Plan(entry.name, "llama.cpp", fits, notes=list(entry.notes))
    where = f"{machine.gpu_count} × {machine.gpu_name} + RAM" if machine.gpu_count else "CPU"
    plan.choices = [
        Choice(
            "engine",
            "llama.cpp",
            "no NVIDIA GPU"
            if not machine.gpu_count
            else "vLLM cannot hold the model with a useful context here; llama.cpp splits it "
            "between GPU and RAM",
        ),
        Choice(
            "weights",
            f"GGUF {quant.name}",
            f"highest quality that fits {where} "
            f"({quant.quality}; {quant.bits_per_weight:.2f} bits per weight)",
        ),
        Choice(
            "context",
            f"{layout.ctx_per_slot} tokens per slot",
            f"trained context {arch.max_positions}; the most that fits with these slots",
        ),
        Choice(
            "parallel slots",
            str(layout.slots),
            "requests decoded together; each slot owns its context (--no-kv-unified)",
        ),
        Choice(
            "KV cache",
            layout.kv_type,
            "f16 is exact"
            if layout.kv_type == "f16"
            else "q8_0 halves the cache with a negligible quality cost (needs flash attention)",
        ),
        Choice("flash attention", "on", "smaller compute buffer; needed for a quantized KV"),
        Choice(
            "threads", str(machine.physical_cores), "one per physical core: decode is memory-bound"
        ),
    ]
    if machine.gpu_count:
        plan.choices.append(
            Choice(
                "gpu layers",
                f"{layout.gpu_layers}/{arch.n_layers}",
                "layers whose weights and KV fit in VRAM",
            )
        )
        if layout.cpu_moe_layers:
            plan.choices.append(
                Choice(
                    "MoE experts on CPU",
                    f"--n-cpu-moe {layout.cpu_moe_layers}",
                    "routed experts of these layers stay in RAM; attention, shared experts and "
                    "KV stay on GPU (each token reads only "
                    f"{arch.experts_per_token} of {arch.n_routed_experts} experts)",
                )
            )
    if quant.nominal_bits < 4:
        plan.warnings.append(f"{quant.name} is below 4-bit: {quant.quality}")
    placed = {"gpu": layout.gpu_bytes, "ram": layout.ram_bytes} if machine.gpu_count else {}
    plan.memory = dict(layout.breakdown) | placed | {"ram": layout.ram_bytes}
    gpu_share = active_gpu_share(arch, layout) if machine.gpu_count else 0.0
    plan.decode_tokens_per_s_bound = decode_bound(entry, quant, machine, gpu_share)
    plan.llama = layout
    if set(layout.kv_parts) - {"k", "v"}:
        plan.kv_parts = layout.kv_parts
        plan.notes.append(kv_story(arch, layout.kv_parts))
    faster = gguf_quant(SPEED_QUANT)
    if quant.bits_per_weight > faster.bits_per_weight * 1.2 and faster.name in entry.quants:
        bound = decode_bound(entry, faster, machine, gpu_share)
        plan.notes.append(
            f"speed over quality: {faster.name} would raise the decode ceiling to {bound:.1f} "
            f"tokens/s ({faster.quality})"
        )
    return plan
