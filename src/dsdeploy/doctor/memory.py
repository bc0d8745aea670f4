"""RAM and swap against what the stored models are planned to use, planned exactly as
``dsdeploy serve`` plans them (``planner.launch.plan_serving``)."""

from __future__ import annotations

from dsdeploy.doctor.finding import Finding, ok
from dsdeploy.errors import DsdeployError
from dsdeploy.planner.launch import plan_serving
from dsdeploy.planner.memory import GIB
from dsdeploy.planner.placement import Machine
from dsdeploy.settings import EngineSettings
from dsdeploy.store import Store

FIX_SMALLER = (
    "lower DSDEPLOY_CTX_SIZE or DSDEPLOY_PARALLEL, free memory, or pull a smaller "
    "quantization (`dsdeploy plan MODEL` shows what fits)"
)


def check_memory(
    store: Store, machine: Machine, engine: EngineSettings, swap_total: int, swap_used: int
) -> list[Finding]:
    """One finding per stored GGUF model, then the models together: serve can swap idle
    engines out, so not fitting together is a warning, one model not fitting alone a failure."""
    findings: list[Finding] = []
    planned_total = 0
    for manifest in store.manifests_all():
        if manifest.format != "gguf":
            continue  # safetensors checkpoints run on other engines: see the python-stack check
        check = f"memory:{manifest.name}"
        try:
            weights = store.materialize(manifest).entry
            launch, plan = plan_serving(
                manifest.name,
                weights,
                manifest.weights.path,
                manifest.weights_bytes,
                machine,
                threads=engine.threads,
                ctx_size=engine.ctx_size,
                parallel=engine.parallel,
            )
        except DsdeployError as exc:
            findings.append(Finding(check, "fail", str(exc), FIX_SMALLER))
            continue
        planned = plan.llama.ram_bytes if plan.llama else manifest.weights_bytes
        planned_total += planned
        findings.append(
            ok(
                check,
                f"planned {planned / GIB:.2f} GiB ({launch.parallel} slots × "
                f"{launch.ctx_per_slot} tokens); {machine.ram_available / GIB:.1f} GiB available",
            )
        )
    swap = f"swap {swap_used / GIB:.1f} of {swap_total / GIB:.1f} GiB in use"
    if planned_total > machine.ram_available:
        findings.append(
            Finding(
                "memory",
                "warn",
                f"all stored models together are planned at {planned_total / GIB:.2f} GiB, "
                f"{machine.ram_available / GIB:.1f} GiB available ({swap}): serve loads them "
                "in turn, evicting idle ones",
                "serve fewer models at once (`dsdeploy serve MODEL`), or set "
                "DSDEPLOY_MEMORY_BUDGET and DSDEPLOY_KEEP_ALIVE_S to bound what stays loaded",
            )
        )
    else:
        findings.append(
            ok(
                "memory",
                f"{machine.ram_available / GIB:.1f} GiB RAM available, models "
                f"planned at {planned_total / GIB:.2f} GiB; {swap}",
            )
        )
    return findings
