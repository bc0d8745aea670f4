"""The stub server (``tests/stub_server``) as an Engine, for fast tests of the supervisor
and the gateway: a real process on a real Unix socket that speaks llama-server's shapes,
so its errors and failures are llama-server's and are read by the same code."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dsdeploy.engines.base import (
    EngineCapabilities,
    EngineFailure,
    LaunchSpec,
    allowlisted_environment,
)
from dsdeploy.engines.llamacpp import explain_llama_failure, translate_llama_error
from dsdeploy.runtime.supervisor import Supervisor
from tests.stub_server.state import Behaviour

ROOT = Path(__file__).resolve().parents[1]
"""On the stub's PYTHONPATH, so that ``python -m tests.stub_server`` finds it from any folder."""


@dataclass(frozen=True)
class StubEngine(Behaviour):
    """The stub as an Engine; the fields it inherits say how the stub behaves."""

    name: str = "stub"
    health_path: str = "/health"
    capabilities: EngineCapabilities = EngineCapabilities(
        embeddings=True,
        responses=True,
        messages=True,
        tokenize=True,
        max_choices=4,
        metrics_path="/metrics",
    )

    def launch(self, socket_path: Path, environ: Mapping[str, str]) -> LaunchSpec:
        argv = [sys.executable, "-u", "-m", "tests.stub_server", "--socket", str(socket_path)]
        return LaunchSpec(
            (*argv, *self.flags()),
            allowlisted_environment(environ, {"PYTHONPATH": str(ROOT)}),
        )

    def explain_failure(self, log_tail: list[str]) -> str:
        return explain_llama_failure(log_tail)

    def translate_error(self, status: int, payload: bytes) -> EngineFailure | None:
        return translate_llama_error(status, payload)


def stub_supervisor(
    engine: StubEngine,
    folder: Path,
    *,
    health_interval_s: float = 5.0,
    health_failures: int = 3,
    environ: Mapping[str, str] | None = None,
) -> Supervisor:
    """The real Supervisor for a stub, with short timeouts; its log goes to ``folder``."""
    return Supervisor(
        engine,
        "stub",
        folder / "engine.log",
        ready_timeout_s=20.0,
        backoff_max_s=1.0,
        health_interval_s=health_interval_s,
        health_failures=health_failures,
        environ=os.environ if environ is None else environ,
    )


@asynccontextmanager
async def supervised(engine: StubEngine, folder: Path, **options: Any) -> AsyncIterator[Supervisor]:
    """The stub started and ready under its supervisor; stopped when the block ends."""
    supervisor = stub_supervisor(engine, folder, **options)
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.stop()


def engine_client(supervisor: Supervisor) -> httpx.AsyncClient:
    """A client of the engine's private socket, as the gateway is."""
    transport = httpx.AsyncHTTPTransport(uds=str(supervisor.socket_path))
    return httpx.AsyncClient(transport=transport, base_url="http://engine", timeout=10.0)


def recorded(record: Path, event: str) -> list[dict[str, object]]:
    """The stub's recorded events of one kind (``request``, ``cancelled``, ``listening``…)."""
    if not record.exists():
        return []
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    return [line for line in lines if line["event"] == event]
