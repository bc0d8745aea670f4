"""The plan for a model already in the store: its weights file is fixed, so the planner
chooses context, slots, KV type and threads for it, and ``serve`` launches what it chose."""

from __future__ import annotations

from pathlib import Path

from dsdeploy.errors import ConfigError
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import Asked, Choice, Plan, make_plan
from dsdeploy.planner.subject import stored_entry

SERVE_CONTEXTS = (4096, 2048, 1024)
"""Per slot; a server for several users starts modest and lets --ctx-size raise it."""


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
    prompt_cache_mib: int = 0,
) -> tuple[LaunchPlan, Plan]:
    """Launch options from the plan; flags given by the user win over its choices."""
    entry, quant = stored_entry(name, weights, weight_file, weight_bytes)
    ask = Asked(
        ctx=ctx_size,
        slots=parallel,
        quants=(quant,),
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
    launch = LaunchPlan(
        threads=threads or machine.physical_cores,
        ctx_per_slot=layout.ctx_per_slot,
        parallel=layout.slots,
        kv_type=layout.kv_type,
        gpu_layers=layout.gpu_layers if machine.gpu_count else None,
        cpu_moe_layers=layout.cpu_moe_layers,
        prompt_cache_mib=prompt_cache_mib,
    )
    return launch, plan
