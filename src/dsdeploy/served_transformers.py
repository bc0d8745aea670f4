"""How `serve --engine transformers` runs stored checkpoints: each checked (architecture,
files, chat template) and planned (device, context, batch) before anything starts, then
started by the supervisor like any engine, one process per model."""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

from rich.console import Console

from dsdeploy.engines.registry import ModelLaunch, build_engine
from dsdeploy.engines.transformers_support import check_checkpoint
from dsdeploy.model.file_checks import ModelChecks
from dsdeploy.model.thinking import name_thinking
from dsdeploy.modelfile_hf import read_hf_layout
from dsdeploy.planner.launch_transformers import plan_transformers_serving
from dsdeploy.planner.placement import Machine
from dsdeploy.runtime.pool import ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.served_models import require_clear_safetensors
from dsdeploy.settings import Settings
from dsdeploy.store import Manifest, Store


def check_transformers_model(manifest: Manifest) -> None:
    """A safetensors checkpoint, unencrypted: what the transformers engine can take."""
    require_clear_safetensors(manifest, "the transformers engine")


def transformers_model_spec(
    settings: Settings,
    store: Store,
    manifest: Manifest,
    machine: Machine,
    console: Console,
    *,
    pinned: bool,
) -> ModelSpec:
    """Check and plan one checkpoint (printing what was chosen) and say how to start it."""
    check_transformers_model(manifest)
    folder = store.materialize(manifest).entry
    servable = check_checkpoint(folder, manifest.name)
    layout = read_hf_layout(folder)
    float32 = max(layout.tensor_types, key=layout.tensor_types.__getitem__, default="") == "F32"
    launch = plan_transformers_serving(
        layout.architecture,
        layout.weight_bytes,
        float32,
        machine,
        ctx_size=settings.engine.ctx_size,
        parallel=settings.engine.parallel,
        threads=settings.engine.threads,
    )
    plan = launch.plan
    seqs = f"{plan.parallel} sequences" if servable.batching == "continuous" else "1 at a time"
    console.print(
        f"[bold]{manifest.name}[/] ({servable.model_type}) on transformers, {launch.device} "
        f"({launch.dtype}): {seqs} × up to {plan.ctx_per_slot} tokens, "
        f"{launch.planned_bytes / 2**30:.2f} GiB planned\n  {servable.batching} batching: "
        f"{servable.why}",
        highlight=False,
    )
    model_launch = ModelLaunch(
        binary=Path(sys.executable),
        model_path=folder,
        alias=manifest.name,
        plan=plan,
        thinking=manifest.info.thinking or name_thinking(manifest.name),
        transformers=launch,
    )
    engine = settings.engine
    make = partial(
        Supervisor,
        build_engine("transformers", model_launch, ModelChecks(settings.dirs.model_checks)),
        manifest.name,
        settings.dirs.logs / f"engine-{manifest.name}.log",
        ready_timeout_s=engine.ready_timeout_s,
        backoff_max_s=engine.restart_backoff_max_s,
        health_interval_s=engine.health_interval_s,
        health_failures=engine.health_failures,
        planned_bytes=launch.planned_bytes,
        environ=dict(os.environ),
    )
    return ModelSpec(
        manifest.name, make, launch.planned_bytes, plan.parallel, pinned=pinned, preload=pinned
    )
