"""``dsdeploy serve``: resolve the models, find or build the engine, plan each model, and put
the gateway in front of the pool that starts their engines."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Coroutine, Iterable
from types import FrameType
from typing import Any

import uvicorn
from rich.console import Console

from dsdeploy.engine_setup import ensure_engine
from dsdeploy.errors import ConfigError
from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.server import uvicorn_config
from dsdeploy.hardware import Hardware, probe
from dsdeploy.planner.machine import parse_size
from dsdeploy.planner.placement import RAM_RESERVE
from dsdeploy.runtime.pool import EnginePool
from dsdeploy.served_models import model_spec, served_names, stored_or_pulled
from dsdeploy.settings import Settings
from dsdeploy.store import Store


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


def budget_bytes(settings: Settings, hardware: Hardware) -> int:
    if settings.serving.memory_budget is None:
        return hardware.ram_available - RAM_RESERVE
    return parse_size(settings.serving.memory_budget)


def prepare(settings: Settings, requested: list[str], console: Console) -> EnginePool:
    """Everything that can fail before a process starts: models, engine, plans, budget."""
    store = Store(settings.dirs.models)
    names = served_names(store, requested)
    unknown = sorted(set(settings.serving.preload + settings.serving.pin) - set(names))
    if unknown:
        raise ConfigError(f"--preload/--pin name models that are not served: {', '.join(unknown)}")
    manifests = [stored_or_pulled(settings, store, name, console) for name in names]
    installed = ensure_engine(settings, console)
    hardware = probe(settings.dirs.data)
    single = len(manifests) == 1  # nothing competes for memory: load it now and keep it
    specs = [
        model_spec(
            settings,
            store,
            manifest,
            installed,
            hardware,
            console,
            pinned=single or manifest.name in settings.serving.pin,
            preload=manifest.name in settings.serving.preload,
        )
        for manifest in manifests
    ]
    keep_alive = None if settings.serving.keep_alive_s < 0 else settings.serving.keep_alive_s
    return EnginePool(
        specs,
        budget_bytes=budget_bytes(settings, hardware),
        keep_alive_s=keep_alive,
        load_wait_s=settings.serving.load_wait_s,
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


def serve(
    settings: Settings, models: list[str], console: Console, hooks: Iterable[Hook] = ()
) -> None:
    """``hooks`` join every API request's pipeline (see ``gateway.hooks``)."""
    gateway = settings.gateway
    check_port_free(gateway.host, gateway.port)
    signal.signal(signal.SIGTERM, exit_quietly)
    signal.signal(signal.SIGINT, exit_quietly)
    pool = prepare(settings, models, console)
    app = create_app(pool, gateway, hooks, metrics_token=settings.security.metrics_token)
    pool.add_listener(app.state.metrics)
    server = uvicorn.Server(uvicorn_config(app, gateway))
    app.state.draining = lambda: server.should_exit  # readiness fails once a stop is asked

    async def main() -> None:
        try:
            await pool.start()
            console.print(
                f"OpenAI API at http://{settings.gateway.host}:{settings.gateway.port}/v1 "
                f"(models: {', '.join(pool.model_names())})"
            )
            await server.serve()
        finally:
            await pool.stop()

    run_event_loop(main())
