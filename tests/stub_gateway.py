"""A gateway process in front of one stub engine, for the limits and log tests: the real
app, pool, supervisor, API keys and limits hook, settings from ``DSDEPLOY_*`` variables (the
key database from ``DSDEPLOY_DB_URL``), run as a separate process with serve's logging and
uvicorn configuration (``python -m tests.stub_gateway PORT``), so that several replicas can
share a Redis and a key database, a client can really go away, and its output is what
serve's would be. Failed keys are throttled per address in the limits' storage, as
``dsdeploy serve`` does.

The stub's behaviour comes from ``STUB_TOKEN_DELAY_S``, ``STUB_EOS_AFTER`` and
``STUB_FAIL_AFTER``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from dsdeploy.bench.launch import free_port, wait_healthy
from dsdeploy.errors import BenchError
from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.limits import LimitsHook
from dsdeploy.gateway.logs import configure_logging
from dsdeploy.gateway.server import uvicorn_config
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.security.auth_throttle import FailedAuthThrottle
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import KeyStore
from dsdeploy.security.limits import Limiter
from dsdeploy.settings import GatewaySettings, SecuritySettings
from tests.stub_engine import ROOT, StubEngine, stub_supervisor


def optional_int(field: str) -> int | None:
    return int(field) if field else None


def app() -> FastAPI:
    folder = Path(tempfile.mkdtemp(prefix="dsdeploy-stub-gateway-"))
    engine = StubEngine(
        token_delay_s=float(os.environ.get("STUB_TOKEN_DELAY_S", "0")),
        eos_after=optional_int(os.environ.get("STUB_EOS_AFTER", "")),
        fail_after=optional_int(os.environ.get("STUB_FAIL_AFTER", "")),
    )

    def make() -> Supervisor:
        return stub_supervisor(engine, folder)

    pool = EnginePool(
        [ModelSpec("stub", make, 2**20, slots=4, pinned=True, preload=True)],
        budget_bytes=2**30,
        keep_alive_s=None,
        load_wait_s=30,
    )
    security = SecuritySettings()
    store = KeyStore.open(security, folder)
    limiter = Limiter.from_url(security.redis_url, lease_s=security.slot_lease_s)
    throttle = FailedAuthThrottle.from_settings(limiter.storage, security)
    auth = AuthConfig(keys=KeyCache(store, security.key_cache_s), throttle=throttle)
    limits = LimitsHook(security, limiter)
    gateway = create_app(pool, GatewaySettings(), [limits], auth)
    serving = gateway.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.start()
        try:
            async with serving(app):
                yield
        finally:
            await pool.stop()
            await limits.aclose()
            store.close()

    gateway.router.lifespan_context = lifespan
    return gateway


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    base_url: str
    store: KeyStore
    """The gateway's key database, opened by the test."""

    def key(
        self, *, rpm: int | None = None, tpm: int | None = None, concurrent: int | None = None
    ) -> dict[str, str]:
        """Headers with a new key of these limits (none: unlimited)."""
        _, secret = self.store.create("test", rpm=rpm, tpm=tpm, max_concurrent=concurrent)
        return {"authorization": f"Bearer {secret}"}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(30)
        self.store.close()


def start_gateway(log: Path, **env: str) -> Gateway:
    """A gateway process; ``env`` adds ``DSDEPLOY_*`` settings and ``STUB_*`` behaviour. Its
    key database is a SQLite file beside ``log`` unless ``DSDEPLOY_DB_URL`` names one."""
    env.setdefault("DSDEPLOY_DB_URL", sqlite_url(log.parent / "keys.db"))
    store = KeyStore(open_database(env["DSDEPLOY_DB_URL"]))
    port = free_port()
    command = [sys.executable, "-m", "tests.stub_gateway", str(port)]
    environ = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **env}
    environ.setdefault("DSDEPLOY_LOG_LEVEL", "warning")
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=environ, stdout=sink, stderr=subprocess.STDOUT)
    gateway = Gateway(process, f"http://127.0.0.1:{port}", store)
    try:
        wait_healthy(process, gateway.base_url, log, timeout_s=60)
    except BenchError:
        gateway.stop()
        raise AssertionError(log.read_text()[-3000:]) from None
    return gateway


def main() -> None:
    """Serves ``app()`` on the port given, as ``serve`` would (settings from ``DSDEPLOY_*``)."""
    settings = GatewaySettings(port=int(sys.argv[1]))
    configure_logging(settings)
    uvicorn.Server(uvicorn_config(app(), settings)).run()


def post_until_admitted(
    url: str, body: dict[str, object], headers: dict[str, str], timeout_s: float, every_s: float
) -> httpx.Response:
    """Posts ``body`` until it is answered 200 or ``timeout_s`` passed; the last answer (for
    a slot or limit that should come back)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.post(url, json=body, headers=headers)
        if answer.status_code == 200 or time.monotonic() >= deadline:
            return answer
        time.sleep(every_s)


if __name__ == "__main__":
    main()
