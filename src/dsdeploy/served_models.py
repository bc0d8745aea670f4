"""Which models `serve` offers and how each would run: resolved in the store (pulled from
the catalog when missing), planned for this machine, and wrapped as a pool ``ModelSpec``
whose engine starts only when the pool asks for it."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from rich.console import Console

from dsdeploy import catalog
from dsdeploy.engines.llamacpp_install import InstalledEngine
from dsdeploy.engines.registry import ModelLaunch, build_engine
from dsdeploy.eval.quant_results import load_quant_eval
from dsdeploy.hardware import Hardware
from dsdeploy.model.file_checks import ModelChecks
from dsdeploy.planner.launch import plan_serving
from dsdeploy.planner.machine import machine_for
from dsdeploy.planner.measured import add_measured_quality
from dsdeploy.planner.render import show_plan
from dsdeploy.progress import byte_progress
from dsdeploy.pull import pull
from dsdeploy.runtime.pool import ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.settings import DEFAULT_MODEL, Settings
from dsdeploy.store import Manifest, Store


def served_names(store: Store, requested: list[str]) -> list[str]:
    """The models named, else every stored model, else the default one (pulled on first use)."""
    return list(dict.fromkeys(requested)) or store.names() or [DEFAULT_MODEL]


def stored_or_pulled(settings: Settings, store: Store, name: str, console: Console) -> Manifest:
    """The model's manifest, once its files pass the structure checks: before the engine is
    even looked for, so a malformed file stops ``serve`` before any process starts."""
    manifest = store.manifest(name)
    if manifest is None:
        manifest = pull(
            catalog.get(name), store, settings.hub, partial(byte_progress, console=console)
        )
    ModelChecks(settings.dirs.model_checks).require(store.materialize(manifest).entry)
    return manifest


def model_spec(
    settings: Settings,
    store: Store,
    manifest: Manifest,
    installed: InstalledEngine,
    hardware: Hardware,
    console: Console,
    *,
    pinned: bool,
    preload: bool,
) -> ModelSpec:
    """Plan one model (printing the plan and why) and say how to start its engine."""
    weights = store.materialize(manifest).entry
    launch, plan = plan_serving(
        manifest.name,
        weights,
        manifest.weights.path,
        manifest.weights_bytes,
        machine_for(hardware, gpu=None, gpus=None, ram=None),
        threads=settings.engine.threads,
        ctx_size=settings.engine.ctx_size,
        parallel=settings.engine.parallel,
    )
    add_measured_quality(plan, load_quant_eval(settings.dirs, manifest.name))
    show_plan(plan, console)
    console.print(
        f"[bold]{manifest.name}[/] ({manifest.info.architecture}, "
        f"sha256 {manifest.weights.sha256[:12]}) on llama.cpp {installed.version} "
        f"[{installed.origin}]\n"
        f"  {launch.parallel} parallel slots × {launch.ctx_per_slot} tokens, "
        f"{launch.threads} threads ({hardware.physical_cores} cores, "
        f"{hardware.ram_available / 2**30:.1f} GiB RAM free)"
    )
    planned = plan.llama.ram_bytes if plan.llama else manifest.weights_bytes
    engine = build_engine(
        "llama.cpp",
        ModelLaunch(
            installed.binary, weights, manifest.name, launch, manifest.info.embedding_model
        ),
        ModelChecks(settings.dirs.model_checks),
    )
    make: Callable[[], Supervisor] = partial(
        Supervisor,
        engine,
        manifest.name,
        settings.dirs.logs / f"engine-{manifest.name}.log",
        ready_timeout_s=settings.engine.ready_timeout_s,
        backoff_max_s=settings.engine.restart_backoff_max_s,
        health_interval_s=settings.engine.health_interval_s,
        health_failures=settings.engine.health_failures,
        planned_bytes=planned,
        environ=dict(os.environ),
    )
    return ModelSpec(
        manifest.name, make, planned, launch.parallel, pinned=pinned, preload=preload or pinned
    )
