"""A plan for a model on this machine or on a what-if one (``--gpu/--gpus/--ram/--ctx``),
as ``dsdeploy plan`` shows it and ``dsdeploy deploy`` renders it."""

from __future__ import annotations

from dataclasses import dataclass

from dsdeploy.catalog import CatalogEntry
from dsdeploy.eval.quant_results import load_quant_eval
from dsdeploy.hardware import probe
from dsdeploy.planner.machine import check_ctx, machine_for
from dsdeploy.planner.measured import add_measured_quality
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import Asked, Plan, make_plan
from dsdeploy.planner.subject import plan_subject
from dsdeploy.settings import Settings


@dataclass(frozen=True)
class WhatIf:
    gpu: str | None = None
    gpus: int | None = None
    ram: str | None = None
    ctx: int | None = None


def plan_for(settings: Settings, model: str, what_if: WhatIf) -> tuple[CatalogEntry, Machine, Plan]:
    entry, quants = plan_subject(model)
    machine = machine_for(
        probe(settings.dirs.data), gpu=what_if.gpu, gpus=what_if.gpus, ram=what_if.ram
    )
    chosen = make_plan(entry, machine, Asked(ctx=check_ctx(what_if.ctx), quants=quants))
    add_measured_quality(chosen, load_quant_eval(settings.dirs, entry.name))
    return entry, machine, chosen
