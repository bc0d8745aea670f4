"""The gateway's app: the OpenAI and Anthropic APIs and the operations routes in front of a
pool of engines, one per model, every API request going through ``pipeline``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from dsdeploy import __version__
from dsdeploy.gateway.errors import ANTHROPIC, install_error_handlers
from dsdeploy.gateway.hooks import Hook, Hooks
from dsdeploy.gateway.metrics import GatewayMetrics
from dsdeploy.gateway.openapi import DocumentedApp
from dsdeploy.gateway.pipeline import RequestContextMiddleware
from dsdeploy.gateway.proxy import EngineProxy
from dsdeploy.gateway.routes_anthropic import PREFIX as ANTHROPIC_PREFIX
from dsdeploy.gateway.routes_anthropic import anthropic_router
from dsdeploy.gateway.routes_openai import openai_router
from dsdeploy.gateway.routes_ops import ops_router
from dsdeploy.gateway.upstream import UpstreamPool
from dsdeploy.settings import GatewaySettings


def not_draining() -> bool:
    return False


def create_app(
    pool: UpstreamPool,
    settings: GatewaySettings,
    hooks: Iterable[Hook] = (),
    *,
    metrics_token: SecretStr | None = None,
    nvml: Any = None,
) -> FastAPI:
    """The app routes to the pool's engines; the pool's owner starts and stops them.
    More hooks may be added (``app.state.hooks.add``) until it serves. Its metrics
    (``app.state.metrics``) are the first hook; ``nvml`` stands in for ``pynvml``.
    ``app.state.draining`` is asked by the readiness probe: the server's owner sets it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with EngineProxy() as proxy:
            app.state.proxy = proxy
            yield

    app = DocumentedApp(
        title="dsdeploy", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.pool = pool
    app.state.created = int(time.time())
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.metrics = GatewayMetrics(pool, nvml)
    app.state.metrics_token = metrics_token
    app.state.draining = not_draining
    app.state.hooks = Hooks([app.state.metrics, *hooks])
    app.add_middleware(RequestContextMiddleware, hooks=app.state.hooks)
    install_error_handlers(app, [(ANTHROPIC_PREFIX, ANTHROPIC)])
    app.include_router(ops_router())
    app.include_router(openai_router())
    app.include_router(anthropic_router())
    return app
