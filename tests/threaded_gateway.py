"""The gateway as ``serve`` runs it — an ``EnginePool`` of stub engines under their real
supervisors, ``create_app``, uvicorn on a loopback port — in a thread of the test process,
so a test can reach both the HTTP side and the app's state."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from dsdeploy.bench.launch import free_port
from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.reasoning import ReasoningField
from dsdeploy.gateway.server import GatewayServer, uvicorn_config
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.settings import GatewaySettings
from tests.stub_engine import StubEngine, stub_supervisor

MIB = 2**20


@dataclass
class StubGateway:
    base_url: str
    app: FastAPI
    pool: EnginePool
    server: GatewayServer


def stub_pool(
    folder: Path, models: Iterable[str], engine: StubEngine | Mapping[str, StubEngine]
) -> EnginePool:
    """``engine`` serves every model, or each model has its own."""

    def spec(name: str) -> ModelSpec:
        (folder / name).mkdir(parents=True, exist_ok=True)
        own = engine[name] if isinstance(engine, Mapping) else engine

        def make() -> Supervisor:
            return stub_supervisor(own, folder / name)

        return ModelSpec(name, make, 100 * MIB, slots=2)

    specs = [spec(name) for name in models]
    return EnginePool(specs, budget_bytes=1000 * MIB, keep_alive_s=None, load_wait_s=30)


@contextlib.contextmanager
def stub_gateway(
    folder: Path,
    models: Iterable[str] = ("stub",),
    *,
    engine: StubEngine | Mapping[str, StubEngine] | None = None,
    metrics_token: str | None = None,
    hooks: Iterable[Hook] = (),
    nvml: Any = None,
    drain_timeout_s: float = 30,
    reasoning_field: ReasoningField = "both",
    pool: EnginePool | None = None,
) -> Iterator[StubGateway]:
    """The gateway in front of stub engines (or of ``pool``, real engines included)."""
    settings = GatewaySettings(
        port=free_port(), drain_timeout_s=drain_timeout_s, reasoning_field=reasoning_field
    )
    pool = pool or stub_pool(folder, models, engine or StubEngine())
    token = SecretStr(metrics_token) if metrics_token is not None else None
    app = create_app(pool, settings, hooks, AuthConfig(metrics_token=token), nvml=nvml)
    pool.add_listener(app.state.metrics)
    server = GatewayServer(uvicorn_config(app, settings), app.state.drain)
    failures: list[BaseException] = []

    async def main() -> None:
        await pool.start()
        try:
            await server.serve()
        finally:
            await pool.stop()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    thread = threading.Thread(target=run, name="stub-gateway")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert server.started, f"the gateway did not start: {failures}"
        yield StubGateway(f"http://127.0.0.1:{settings.port}", app, pool, server)
    finally:
        server.should_exit = True
        thread.join(60)
