"""Get an engine that is known to run here: build it, or prove a found one, on the default
model (pulled first if the store lacks it), before anything is served with it."""

from __future__ import annotations

import os
import time
from functools import partial

import psutil
from rich.console import Console

from dsdeploy import catalog
from dsdeploy.engines import llamacpp_install, llamacpp_locate
from dsdeploy.engines.llamacpp_install import InstalledEngine
from dsdeploy.engines.llamacpp_smoke import SmokeSubject
from dsdeploy.progress import byte_progress, step_progress
from dsdeploy.pull import pull
from dsdeploy.settings import DEFAULT_MODEL, Settings
from dsdeploy.store import Store


def smoke_subject(settings: Settings, console: Console) -> SmokeSubject:
    """The default model, small and in every store, loaded with one thread per core."""
    store = Store(settings.dirs.models)
    manifest = store.manifest(DEFAULT_MODEL)
    if manifest is None:
        console.print(f"pulling {DEFAULT_MODEL}, the model every engine is checked with")
        bar = partial(byte_progress, console=console)
        manifest = pull(catalog.get(DEFAULT_MODEL), store, settings.hub, bar)
    threads = settings.engine.threads or psutil.cpu_count(logical=False) or 1
    return SmokeSubject(manifest.name, store.weights_path(manifest), threads, dict(os.environ))


def install_engine(settings: Settings, console: Console, *, rebuild: bool) -> InstalledEngine:
    """Build llama.cpp for this machine (or reuse the proven build) and report what it does."""
    started = time.monotonic()
    with step_progress("building llama.cpp", console) as progress:
        installed = llamacpp_install.install(
            settings.dirs,
            settings.engine.engine_backend,
            settings.engine.build_jobs,
            progress,
            partial(smoke_subject, settings, console),
            rebuild=rebuild,
            say=console.print,
        )
    elapsed = time.monotonic() - started
    console.print(describe_build(installed, elapsed if elapsed > 60 else None), highlight=False)
    return installed


def describe_build(installed: InstalledEngine, elapsed_s: float | None) -> str:
    info = installed.info
    lines = [f"llama-server {installed.version} at {installed.binary}"]
    isa = info.get("isa", {})
    lines.append(f"  instruction set: {isa.get('tag', 'unknown')}")
    lines += [f"  left out: {reason}" for reason in isa.get("reasons", [])]
    if elapsed_s is not None:
        smoke = info.get("smoke_test", {})
        lines.append(
            f"  install took {elapsed_s / 60:.1f} min: build {info.get('build_seconds', 0):.0f} s, "
            f"smoke test on {smoke.get('model')} {smoke.get('seconds', 0):.1f} s"
        )
    bench = info.get("bench")
    if bench:
        lines.append(
            f"  llama-bench ({bench['threads']} threads): pp{bench['prompt_tokens']} "
            f"{bench['pp_tokens_per_s']:.1f} tok/s, tg{bench['gen_tokens']} "
            f"{bench['tg_tokens_per_s']:.1f} tok/s"
        )
    return "\n".join(lines)


def ensure_engine(settings: Settings, console: Console) -> InstalledEngine:
    """The engine `serve` uses: found and proven here, or built now."""
    dirs = settings.dirs
    found = llamacpp_locate.locate(
        dirs, settings.engine.llama_server, settings.engine.engine_backend
    )
    if found is None:
        console.print("llama-server is not installed yet: building it once for this machine")
        return install_engine(settings, console, rebuild=False)
    if not llamacpp_locate.proven_here(dirs, found):
        console.print(f"checking once that {found.binary} runs on this machine")
        llamacpp_locate.prove(dirs, found, smoke_subject(settings, console))
    return found
