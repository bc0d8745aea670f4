"""The gateway as ``dsdeploy serve`` runs it — ``create_app`` and ``uvicorn_config`` on a
real listening socket — in front of the stub engine, in a thread of the test process, so
tests reach it over TCP (or TLS) with real peer addresses."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.server import uvicorn_config
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.settings import GatewaySettings, SecuritySettings
from tests.stub_engine import StubEngine, stub_supervisor

MIB = 2**20
MODEL = "stub"


def stub_pool(folder: Path) -> EnginePool:
    """One stub model, loaded on its first request (tests that never reach it pay nothing)."""

    def make() -> Supervisor:
        return stub_supervisor(StubEngine(), folder)

    spec = ModelSpec(MODEL, make, MIB, slots=4)
    return EnginePool([spec], budget_bytes=100 * MIB, keep_alive_s=None, load_wait_s=30)


def listening_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if host == "::":  # dual stack: IPv4 clients arrive as ::ffff:a.b.c.d
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


@contextmanager
def running_gateway(
    folder: Path,
    security: SecuritySettings,
    host: str = "127.0.0.1",
    hooks: Sequence[Hook] = (),
    auth: AuthConfig = AuthConfig(),  # noqa: B008 (frozen)
    pool: EnginePool | None = None,
) -> Iterator[int]:
    """Serves ``pool`` (default: one stub model) until the block ends; yields the port."""
    sock = listening_socket(host)
    port = sock.getsockname()[1]
    gateway = GatewaySettings(host=host, port=port, log_level="warning")
    pool = stub_pool(folder) if pool is None else pool
    config = uvicorn_config(create_app(pool, gateway, hooks, auth, security), gateway, security)
    server = uvicorn.Server(config)

    async def main() -> None:
        await pool.start()
        try:
            await server.serve(sockets=[sock])
        finally:
            await pool.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
