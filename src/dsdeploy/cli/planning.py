"""`dsdeploy hw` and `dsdeploy plan`: what this machine has and how a model would run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from dsdeploy.cli.common import fail, load_settings
from dsdeploy.errors import DsdeployError
from dsdeploy.hardware import probe
from dsdeploy.planner.render import plan_json, show_hardware, show_plan
from dsdeploy.planning import WhatIf, plan_for


def hw() -> None:
    """Show what this machine has: CPU, ISA flags, RAM, swap, disk, NVIDIA GPUs."""
    settings = load_settings()
    show_hardware(probe(settings.dirs.data), Console())


def plan(
    model: Annotated[
        str,
        typer.Argument(help="Catalog name (deepseek-r1-distill-qwen-7b), GGUF file or HF folder."),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    gpu: Annotated[str | None, typer.Option(help="Plan for this GPU, e.g. 'RTX 4090'.")] = None,
    gpus: Annotated[int | None, typer.Option(help="Plan for this many GPUs.")] = None,
    ram: Annotated[str | None, typer.Option(help="Plan for this much RAM, e.g. 64G.")] = None,
    ctx: Annotated[int | None, typer.Option(help="Context tokens per slot.")] = None,
) -> None:
    """Say how to run a model here (or on a what-if machine), each choice with its reason."""
    settings = load_settings()
    try:
        _, _, chosen = plan_for(settings, model, WhatIf(gpu, gpus, ram, ctx))
    except DsdeployError as exc:
        raise fail(exc) from None
    if json_output:
        print(plan_json(chosen))
    else:
        show_plan(chosen, Console())
    if not chosen.fits:
        raise typer.Exit(3)
