"""How `serve --engine vllm` runs a stored checkpoint: planned for this node's GPUs (tensor
parallel over all of them), started by the supervisor like any engine.

vLLM takes a share of every GPU's memory (``--gpu-memory-utilization``), so one vLLM model
is served at a time, and only a safetensors checkpoint (GGUF belongs to llama.cpp).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from rich.console import Console

from dsdeploy import catalog
from dsdeploy.catalog import CatalogEntry
from dsdeploy.engines.registry import ModelLaunch, build_engine
from dsdeploy.errors import ConfigError
from dsdeploy.hardware import Hardware
from dsdeploy.model.file_checks import ModelChecks
from dsdeploy.modelfile import ModelLayout
from dsdeploy.modelfile_hf import read_hf_layout
from dsdeploy.planner.launch_vllm import plan_vllm_serving
from dsdeploy.planner.machine import machine_for
from dsdeploy.planner.quants import Quant
from dsdeploy.planner.render import show_plan
from dsdeploy.planner.subject import entry_for_layout, file_quant
from dsdeploy.runtime.pool import ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.served_models import require_clear_safetensors
from dsdeploy.settings import Settings
from dsdeploy.store import Manifest, Store

HOST_RAM_BYTES = 4 * 2**30
"""vLLM's own process memory outside the GPUs (torch, CUDA, tokenizer): an assumption, not
a measurement (no GPU on the machines these lines were written on)."""


def check_vllm_models(manifests: list[Manifest]) -> None:
    """One safetensors model, unencrypted: what a vLLM engine can take."""
    if len(manifests) != 1:
        names = ", ".join(m.name for m in manifests)
        raise ConfigError(
            f"--engine vllm serves one model (it takes most of every GPU's memory), not {names}"
        )
    require_clear_safetensors(manifests[0], "vLLM")


def checkpoint_entry(name: str, folder: Path, weight_bytes: int) -> tuple[CatalogEntry, Quant]:
    """The model's shape (the catalog's when it knows the model, else the checkpoint's
    config.json) and its weights at their stored size."""
    known = catalog.find(name)
    if known is not None and known.architecture is not None:
        layout = ModelLayout(known.architecture, weight_bytes, 0, {})
    else:
        layout = read_hf_layout(folder)
    entry = entry_for_layout(name, known.description if known else name, layout)
    return entry, file_quant(layout, "checkpoint", "the checkpoint as it is")


def vllm_model_spec(
    settings: Settings,
    store: Store,
    manifest: Manifest,
    program: tuple[str, ...],
    hardware: Hardware,
    console: Console,
) -> ModelSpec:
    """Plan the checkpoint on this node's GPUs (printing the plan) and say how to start it."""
    folder = store.materialize(manifest).entry
    entry, weights = checkpoint_entry(manifest.name, folder, manifest.weights_bytes)
    machine = machine_for(hardware, gpu=None, gpus=None, ram=None)
    launch, plan = plan_vllm_serving(
        entry,
        machine,
        nodes=settings.engine.nodes,
        weights=weights,
        ctx_size=settings.engine.ctx_size,
        parallel=settings.engine.parallel,
    )
    show_plan(plan, console)
    console.print(
        f"[bold]{manifest.name}[/] on vLLM ({' '.join(program)}): tensor parallel "
        f"{launch.tensor_parallel}, {launch.parallel} sequences × up to {launch.ctx_per_slot} "
        "tokens"
    )
    model_launch = ModelLaunch(
        binary=Path(program[0]),
        model_path=folder,
        alias=manifest.name,
        plan=launch,
        program=program,
        cache_dir=settings.dirs.engines / "vllm",
    )
    checks = ModelChecks(settings.dirs.model_checks)
    engine = settings.engine
    make = partial(
        Supervisor,
        build_engine("vllm", model_launch, checks),
        manifest.name,
        settings.dirs.logs / f"engine-{manifest.name}.log",
        ready_timeout_s=engine.ready_timeout_s,
        backoff_max_s=engine.restart_backoff_max_s,
        health_interval_s=engine.health_interval_s,
        health_failures=engine.health_failures,
        planned_bytes=HOST_RAM_BYTES,
        environ=dict(os.environ),
    )
    return ModelSpec(
        manifest.name, make, HOST_RAM_BYTES, launch.parallel, pinned=True, preload=True
    )
