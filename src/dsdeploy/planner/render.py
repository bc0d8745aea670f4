"""A plan on one screen (rich), or as JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from dsdeploy.hardware import Hardware
from dsdeploy.planner.memory import GIB
from dsdeploy.planner.plan import Plan

COUNTS = {"kv_pool_tokens", "kv_bytes_per_token"}


def plan_json(plan: Plan) -> str:
    return json.dumps(asdict(plan), indent=1)


def show_plan(plan: Plan, console: Console) -> None:
    status = "fits" if plan.fits else "[red]does not fit[/]"
    console.print(f"[bold]{plan.model}[/] on {plan.engine}: {status}")
    table = Table("choice", "value", "why", show_header=True, expand=False)
    for choice in plan.choices:
        table.add_row(choice.what, choice.value, choice.why)
    console.print(table)
    parts = [
        f"{name} {value:,}" if name in COUNTS else f"{name} {value / GIB:.2f} GiB"
        for name, value in plan.memory.items()
    ]
    console.print("memory: " + ", ".join(parts), highlight=False)
    console.print(
        f"decode ceiling: {plan.decode_tokens_per_s_bound:.1f} tokens/s per stream "
        "(memory bandwidth ÷ bytes read per token)"
    )
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for note in plan.notes:
        console.print(f"note: {note}")
    if not plan.fits:
        console.print(
            f"[red]short by {plan.shortfall / GIB:.1f} GiB[/] even with the smallest plan above."
        )
        console.print(f"what would run it: {plan.scale_out}")


def show_hardware(hardware: Hardware, console: Console) -> None:
    table = Table("part", "value", show_header=False)
    table.add_row(
        "CPU",
        f"{hardware.cpu_model} ({hardware.physical_cores} cores, {hardware.logical_cores} threads)",
    )
    table.add_row("ISA", ", ".join(hardware.isa_flags) or "none of AVX2/AVX-512/AMX")
    for reason in hardware.isa_left_out:
        table.add_row("not usable", reason)
    table.add_row(
        "RAM",
        f"{hardware.ram_total / GIB:.1f} GiB, {hardware.ram_available / GIB:.1f} GiB available",
    )
    table.add_row("swap", f"{hardware.swap_total / GIB:.1f} GiB")
    table.add_row("disk free", f"{hardware.disk_free / GIB:.1f} GiB at the data dir")
    for gpu in hardware.gpus:
        major, minor = gpu.compute_capability
        table.add_row(
            f"GPU {gpu.index}",
            f"{gpu.name}, {gpu.memory_total / GIB:.1f} GiB "
            f"({gpu.memory_free / GIB:.1f} free), compute {major}.{minor}",
        )
    if hardware.gpus:
        table.add_row("driver", f"{hardware.driver_version} (CUDA {hardware.cuda_version})")
    else:
        table.add_row("GPU", f"no NVIDIA GPU ({hardware.nvml_error or 'none found'})")
    console.print(table)
