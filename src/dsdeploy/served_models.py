"""Which models `serve` offers and how each would run: resolved in the store (pulled from
the catalog when missing), planned for this machine, and wrapped as a pool ``ModelSpec``
whose engine starts only when the pool asks for it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from dsdeploy import catalog
from dsdeploy.engine_setup import ensure_engine
from dsdeploy.engines.base import inherited_path
from dsdeploy.engines.llamacpp_install import InstalledEngine
from dsdeploy.engines.registry import ModelLaunch, build_engine
from dsdeploy.errors import ConfigError
from dsdeploy.eval.quant_results import load_quant_eval
from dsdeploy.gguf_parts import split_part
from dsdeploy.hardware import Hardware
from dsdeploy.model.file_checks import ModelChecks
from dsdeploy.model.thinking import name_thinking
from dsdeploy.planner.launch import plan_serving
from dsdeploy.planner.machine import machine_for
from dsdeploy.planner.measured import add_measured_quality
from dsdeploy.planner.render import show_plan
from dsdeploy.progress import byte_progress
from dsdeploy.pull import pull
from dsdeploy.runtime.pool import ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.security.weights_crypto import read_header, unwrap
from dsdeploy.security.weights_key import load_kek
from dsdeploy.security.weights_memory import SealedWeights
from dsdeploy.settings import DEFAULT_MODEL, Settings
from dsdeploy.store import Manifest, Store


def require_clear_safetensors(manifest: Manifest, engine: str) -> None:
    """What vLLM and the transformers engine can take: a safetensors checkpoint, not
    encrypted (only llama.cpp reads weights from sealed memory)."""
    if manifest.format != "safetensors":
        raise ConfigError(
            f"{manifest.name} is a {manifest.format} file, which {engine} does not serve: "
            "pull its safetensors checkpoint, or serve with --engine llama.cpp"
        )
    if manifest.weights.encrypted is not None:
        raise ConfigError(
            f"{manifest.name} is encrypted, which only llama.cpp can serve from memory; run "
            f"`dsdeploy decrypt {manifest.name}` or serve with --engine llama.cpp"
        )


def served_names(store: Store, requested: list[str]) -> list[str]:
    """The models named, else every stored model, else the default one (pulled on first use)."""
    return list(dict.fromkeys(requested)) or store.names() or [DEFAULT_MODEL]


def with_adapters(store: Store, manifests: list[Manifest]) -> list[tuple[Manifest, list[Manifest]]]:
    """Each base to start an engine for, with the adapters it loads: an adapter named alone
    brings its base (served too, under its own name)."""
    adapters: dict[str, list[Manifest]] = {}
    bases: dict[str, Manifest] = {}
    for manifest in manifests:
        if manifest.base is None:
            bases.setdefault(manifest.name, manifest)
            continue
        adapters.setdefault(manifest.base, []).append(manifest)
        if manifest.base not in bases:
            base = store.manifest(manifest.base)
            if base is None:
                raise ConfigError(
                    f"{manifest.name} adapts {manifest.base}, which is not in the store; pull "
                    f"it again (`dsdeploy pull {manifest.base}`)"
                )
            bases[base.name] = base
    return [(base, adapters.get(name, [])) for name, base in bases.items()]


def stored_or_pulled(settings: Settings, store: Store, name: str, console: Console) -> Manifest:
    """The model's manifest, once its files pass the structure checks: before the engine is
    even looked for, so a malformed file stops ``serve`` before any process starts."""
    manifest = store.manifest(name)
    if manifest is None:
        manifest = pull(
            catalog.get(name), store, settings.hub, partial(byte_progress, console=console)
        )
    check_files(settings, store, manifest)
    return manifest


def check_files(settings: Settings, store: Store, manifest: Manifest) -> None:
    if manifest.weights.encrypted is None:  # encrypted ones were checked before encryption
        ModelChecks(settings.dirs.model_checks).require(store.materialize(manifest).entry)


def respecifier(
    settings: Settings, hardware: Hardware, console: Console
) -> Callable[[ModelSpec], ModelSpec]:
    """How a reload rebuilds a model's spec: from the store's manifest as it is now (weights
    pulled again, or a new version, are taken), its files checked again, and the engine
    located again (a rebuilt one is taken), planned as ``serve`` planned it. The flags and
    environment are the running server's own, so the settings are those it started with."""

    def respec(current: ModelSpec) -> ModelSpec:
        store = Store(settings.dirs.models)
        manifest = store.manifest(current.name)
        if manifest is None:
            raise ConfigError(
                f"{current.name} is no longer in the store; pull it again "
                f"(`dsdeploy pull {current.name}`) and reload"
            )
        check_files(settings, store, manifest)
        adapters = [store.get(name) for name in current.adapters]
        installed = ensure_engine(settings, console)
        return model_spec(
            settings,
            store,
            manifest,
            installed,
            hardware,
            console,
            pinned=current.pinned,
            preload=current.preload,
            adapters=adapters,
        )

    return respec


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
    adapters: list[Manifest] | None = None,
) -> ModelSpec:
    """Plan one model (printing the plan and why) and say how to start its engine, with the
    LoRA ``adapters`` it loads (their weights counted in its planned memory)."""
    adapters = adapters or []
    memory = memory_weights(settings, store, manifest)
    with planning_view(store, manifest, memory) as weights:
        launch, plan = plan_serving(
            manifest.name,
            weights,
            manifest.weights.path,
            manifest.weights_bytes,
            machine_for(hardware, gpu=None, gpus=None, ram=None),
            threads=settings.engine.threads,
            ctx_size=settings.engine.ctx_size,
            parallel=settings.engine.parallel,
            prompt_cache_mib=settings.engine.prompt_cache_mib,
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
    planned += launch.prompt_cache_mib * 2**20 + sum(a.weights_bytes for a in adapters)
    if adapters:
        console.print(f"  LoRA adapters over it: {', '.join(a.name for a in adapters)}")
    model_launch = ModelLaunch(
        installed.binary,
        weights,
        manifest.name,
        launch,
        manifest.info.embedding_model,
        thinking=manifest.info.thinking or name_thinking(manifest.name),
        adapters=tuple(store.materialize(a).entry for a in adapters),
    )
    make: Callable[[], Supervisor] = partial(
        engine_supervisor,
        model_launch,
        memory,
        ModelChecks(settings.dirs.model_checks),
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
        manifest.name,
        make,
        planned,
        launch.parallel,
        pinned=pinned,
        preload=preload or pinned,
        adapters=tuple(a.name for a in adapters),
    )


def engine_supervisor(
    launch: ModelLaunch,
    memory: Callable[[], SealedWeights] | None,
    checks: ModelChecks,
    *args: Any,
    **options: Any,
) -> Supervisor:
    """One engine's supervisor; encrypted weights get a memfd of their own, made when it
    starts and closed when it stops for good (a swap's new engine has its own)."""
    weights = memory() if memory is not None else None
    engine = build_engine("llama.cpp", replace(launch, weights=weights), checks)
    return Supervisor(engine, *args, weights=weights, **options)


def memory_weights(
    settings: Settings, store: Store, manifest: Manifest
) -> Callable[[], SealedWeights] | None:
    """For a model with encrypted weights, how to decrypt them into memory; checked now
    (the key is there and is the right one) so that a bad key fails `serve` at once."""
    stored = manifest.weights
    if stored.encrypted is None:
        return None
    if manifest.format != "gguf" or split_part(stored.path) is not None:
        raise ConfigError(
            f"{manifest.name}: only a single-file GGUF can be served encrypted (llama.cpp "
            f"finds split parts by file name); run `dsdeploy decrypt {manifest.name}`"
        )
    kek = load_kek(settings.security, settings.dirs.config)
    blob = store.stored_blob(manifest, stored)
    what = f"{manifest.name}/{stored.path}"
    with blob.open("rb") as source:
        unwrap(read_header(source, what)[0], kek, what)
    return partial(SealedWeights, blob, kek, what, stored.encrypted.plain_sha256)


@contextmanager
def planning_view(
    store: Store, manifest: Manifest, memory: Callable[[], SealedWeights] | None
) -> Iterator[Path]:
    """The weights file the planner may read. Encrypted weights are decrypted into memory
    for it only when the catalog does not know the model (the planner reads no file then)."""
    if memory is None:
        yield store.materialize(manifest).entry
    elif catalog.find(manifest.name) is not None:
        yield Path(manifest.weights.path)  # a name for messages; never opened
    else:
        weights = memory()
        weights.load()
        try:
            yield Path(inherited_path(weights.fd))
        finally:
            weights.release()
