"""The plan for a model already in the store: its weights file is fixed, so the planner
chooses context, slots, KV type and threads for it, and ``serve`` launches what it chose."""

from __future__ import annotations

from pathlib import Path

from dsdeploy import catalog
from dsdeploy.catalog import CatalogEntry
from dsdeploy.engines.llamacpp import LaunchOptions
from dsdeploy.errors import ConfigError
from dsdeploy.modelfile import read_gguf_layout
from dsdeploy.planner.architecture import Architecture
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import Asked, Choice, Plan, make_plan
from dsdeploy.planner.quants import Quant

SERVE_CONTEXTS = (4096, 2048, 1024)
"""Per slot; a server for several users starts modest and lets --ctx-size raise it."""


def stored_shape(name: str, weights: Path) -> tuple[str, Architecture]:
    """The catalog's numbers when the model is known; otherwise the file's own header."""
    entry = catalog.find(name)
    if entry is not None and entry.architecture is not None:
        return entry.description, entry.architecture
    return name, read_gguf_layout(weights).architecture


def stored_quant(arch: Architecture, weight_file: str, weight_bytes: int) -> Quant:
    bits = weight_bytes * 8 / arch.total_params
    return Quant(Path(weight_file).name, bits, int(bits), "the file in the store")


def plan_serving(
    name: str,
    weights: Path,
    weight_file: str,
    weight_bytes: int,
    machine: Machine,
    *,
    threads: int | None,
    ctx_size: int | None,
    parallel: int | None,
) -> tuple[LaunchOptions, Plan]:
    """Launch options from the plan; flags given by the user win over its choices."""
    description, arch = stored_shape(name, weights)
    entry = CatalogEntry(
        name=name,
        source="",
        format="gguf",
        description=description,
        provenance="",
        architecture=arch,
        total_params=arch.total_params,
        active_params=arch.active_params,
    )
    ask = Asked(
        ctx=ctx_size,
        slots=parallel,
        quants=(stored_quant(arch, weight_file, weight_bytes),),
        contexts=SERVE_CONTEXTS,
        allow_vllm=False,
    )
    plan = make_plan(entry, machine, ask)
    layout = plan.llama
    assert layout is not None
    if not plan.fits:
        raise ConfigError(
            f"{name} does not fit: {plan.shortfall / 2**30:.1f} GiB short even at "
            f"{layout.slots} slot(s) × {layout.ctx_per_slot} tokens; "
            "lower --ctx-size or --parallel, or pull a smaller quantization"
        )
    if threads:
        plan.choices = [
            Choice("threads", str(threads), "set by --threads") if c.what == "threads" else c
            for c in plan.choices
        ]
    launch = LaunchOptions(
        threads=threads or machine.physical_cores,
        ctx_per_slot=layout.ctx_per_slot,
        parallel=layout.slots,
        kv_type=layout.kv_type,
        gpu_layers=layout.gpu_layers if machine.gpu_count else None,
        cpu_moe_layers=layout.cpu_moe_layers,
    )
    return launch, plan
