"""The gateway's app: the OpenAI and Anthropic APIs and the operations routes in front of a
pool of engines, one per model, every API request going through ``pipeline``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from dsdeploy import __version__
from dsdeploy.gateway.access_log import AccessLog
from dsdeploy.gateway.audit import RequestAudit
from dsdeploy.gateway.auth import AuthConfig, AuthMiddleware, ModelAllowlist, keys_kept_fresh
from dsdeploy.gateway.cors import Cors
from dsdeploy.gateway.drain import Drain
from dsdeploy.gateway.errors import ANTHROPIC, install_error_handlers
from dsdeploy.gateway.hooks import Hook, Hooks
from dsdeploy.gateway.metrics import GatewayMetrics
from dsdeploy.gateway.network import NetworkGuard, NetworkPolicy
from dsdeploy.gateway.openapi import DocumentedApp
from dsdeploy.gateway.pipeline import Finished, RequestContextMiddleware
from dsdeploy.gateway.proxy import EngineProxy
from dsdeploy.gateway.reasoning import ReasoningHook
from dsdeploy.gateway.routes_anthropic import PREFIX as ANTHROPIC_PREFIX
from dsdeploy.gateway.routes_anthropic import anthropic_router
from dsdeploy.gateway.routes_openai import openai_router
from dsdeploy.gateway.routes_ops import ops_router
from dsdeploy.gateway.tool_calls import ToolCallHook
from dsdeploy.gateway.upstream import UpstreamPool
from dsdeploy.settings import GatewaySettings, SecuritySettings

ERROR_SHAPES = ((ANTHROPIC_PREFIX, ANTHROPIC),)
"""Paths whose errors take another API's shape than OpenAI's."""


def create_app(
    pool: UpstreamPool,
    settings: GatewaySettings,
    hooks: Iterable[Hook] = (),
    auth: AuthConfig = AuthConfig(),  # noqa: B008 (frozen, so one shared default is safe)
    security: SecuritySettings | None = None,
    audit: RequestAudit | None = None,
    *,
    nvml: Any = None,
) -> FastAPI:
    """The app routes to the pool's engines; the pool's owner starts and stops them (and
    the audit's writer). More hooks may be added (``app.state.hooks.add``) until it serves.
    Every path but the probes is behind ``auth`` (see ``gateway.auth``); ``audit`` records
    every request, refused ones included, and ``settings.access_log`` logs a line for each
    (``gateway.access_log``). Its metrics (``app.state.metrics``) are the first
    hook; ``nvml`` stands in for ``pynvml``. ``app.state.drain`` is the stop's drain: the
    server (``gateway.server.GatewayServer``) begins it at a stop signal.

    ``security`` (what ``serve`` always passes) puts the network guard and CORS in front of
    auth; without it the app is for in-process use only (tests), with no network checks."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with EngineProxy() as proxy, keys_kept_fresh(auth.keys):
            app.state.proxy = proxy
            yield

    app = DocumentedApp(
        shapes=ERROR_SHAPES,
        title="dsdeploy",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.pool = pool
    app.state.created = int(time.time())
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.body_timeout_s = settings.body_timeout_s
    app.state.metrics = GatewayMetrics(pool, nvml)
    app.state.metrics_token = auth.metrics_token
    app.state.drain = Drain(settings.drain_timeout_s)
    allowlist = [ModelAllowlist()] if auth.keys is not None else []
    audit_hooks = audit.hooks if audit else ()
    reasoning = ReasoningHook(settings.reasoning_field)
    app.state.hooks = Hooks(
        [app.state.metrics, *allowlist, reasoning, ToolCallHook(), *hooks, *audit_hooks]
    )
    # The last added runs first: context, network guard, CORS (a preflight carries no
    # key), auth, app.
    app.add_middleware(AuthMiddleware, config=auth, shapes=ERROR_SHAPES)
    if security is not None:
        if security.cors_origins:
            app.add_middleware(Cors, origins=security.cors_origins, shapes=ERROR_SHAPES)
        policy = NetworkPolicy.from_settings(settings, security)
        app.add_middleware(NetworkGuard, policy=policy, shapes=ERROR_SHAPES)
    finished: list[Finished] = [audit.record] if audit else []
    if settings.access_log:
        finished.append(AccessLog(app.state.metrics.model_label).record)
    app.add_middleware(RequestContextMiddleware, hooks=app.state.hooks, finished=finished)
    install_error_handlers(app, ERROR_SHAPES)
    app.include_router(ops_router())
    app.include_router(openai_router())
    app.include_router(anthropic_router())
    return app
