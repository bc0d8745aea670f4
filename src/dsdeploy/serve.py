"""``dsdeploy serve``: pull the model and engine if needed, start the engine under
supervision, and put the gateway in front of it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Coroutine
from functools import partial
from types import FrameType
from typing import Any

import uvicorn
from rich.console import Console

from dsdeploy.engine_setup import ensure_engine
from dsdeploy.engines.llamacpp import LlamaCppEngine
from dsdeploy.errors import ConfigError
from dsdeploy.eval.quant_results import load_quant_eval
from dsdeploy.gateway.app import create_app
from dsdeploy.hardware import probe
from dsdeploy.planner.launch import plan_serving
from dsdeploy.planner.machine import machine_for
from dsdeploy.planner.measured import add_measured_quality
from dsdeploy.planner.render import show_plan
from dsdeploy.progress import byte_progress
from dsdeploy.pull import pull, resolve
from dsdeploy.settings import Settings
from dsdeploy.store import Store
from dsdeploy.supervisor import Supervisor


def check_port_free(host: str, port: int) -> None:
    """Fail before the engine loads, not after, when the API port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port"
            ) from None


def prepare(settings: Settings, model_name: str, console: Console) -> Supervisor:
    """Everything that can fail before a process starts: model, engine, launch flags."""
    store = Store(settings.dirs.models)
    manifest = store.manifest(model_name)
    if manifest is None:
        entry = resolve(model_name)
        manifest = pull(entry, store, settings, partial(byte_progress, console=console))
    installed = ensure_engine(settings, console)
    hardware = probe(settings.dirs.data)
    weights = store.materialize(manifest).entry
    launch, plan = plan_serving(
        manifest.name,
        weights,
        manifest.weights.path,
        manifest.weights_bytes,
        machine_for(hardware, gpu=None, gpus=None, ram=None),
        threads=settings.threads,
        ctx_size=settings.ctx_size,
        parallel=settings.parallel,
    )
    add_measured_quality(plan, load_quant_eval(settings.dirs, manifest.name))
    show_plan(plan, console)
    engine = LlamaCppEngine(
        binary=installed.binary,
        model_path=weights,
        alias=manifest.name,
        options=launch,
        embedding_model=manifest.info.embedding_model,
    )
    console.print(
        f"[bold]{manifest.name}[/] ({manifest.info.architecture}, "
        f"sha256 {manifest.weights.sha256[:12]}) on llama.cpp {installed.version} "
        f"[{installed.origin}]\n"
        f"  {launch.parallel} parallel slots × {launch.ctx_per_slot} tokens, "
        f"{launch.threads} threads ({hardware.physical_cores} cores, "
        f"{hardware.ram_available / 2**30:.1f} GiB RAM free)"
    )
    log_path = settings.dirs.logs / f"engine-{manifest.name}.log"
    return Supervisor(
        engine,
        manifest.name,
        log_path,
        ready_timeout_s=settings.ready_timeout_s,
        backoff_max_s=settings.restart_backoff_max_s,
        planned_bytes=plan.llama.ram_bytes if plan.llama else None,
        environ=os.environ,
    )


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where it is installed (it comes with uvicorn[standard]), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def exit_quietly(signum: int, frame: FrameType | None) -> None:
    """A stop signal means a clean, successful exit once everything is shut down."""
    raise SystemExit(0)


def serve(settings: Settings, model_name: str, console: Console) -> None:
    check_port_free(settings.host, settings.port)
    signal.signal(signal.SIGTERM, exit_quietly)
    signal.signal(signal.SIGINT, exit_quietly)
    supervisor = prepare(settings, model_name, console)
    config = uvicorn.Config(
        create_app(supervisor),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )

    async def main() -> None:
        try:
            await supervisor.start()
            console.print(
                f"engine ready; OpenAI API at http://{settings.host}:{settings.port}/v1 "
                f"(model {model_name!r})"
            )
            await uvicorn.Server(config).serve()
        finally:
            await supervisor.stop()

    run_event_loop(main())
