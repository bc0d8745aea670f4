"""Operations routes, apart from the APIs: whether the gateway can serve (``/health``, and
the probes ``/health/live`` and ``/health/ready`` an orchestrator asks), what each model's
engine is doing (``dsdeploy ps``), and Prometheus metrics. They take no body and lease no
engine, and the probes take no API key.

``/metrics`` has its own bearer token (``DSDEPLOY_METRICS_TOKEN``, compared in constant
time); with none configured it answers only clients on this machine (loopback).
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from starlette.responses import Response

from dsdeploy.gateway.errors import OPENAI, ApiError, OpenAIErrorBody, client_safe, error_response
from dsdeploy.gateway.metrics import GatewayMetrics
from dsdeploy.gateway.pipeline import unknown_model
from dsdeploy.gateway.upstream import UpstreamPool

HEALTH_DOCS: dict[int | str, dict[str, Any]] = {
    200: {"description": 'serving: `{"status": "ok", "models": [...]}`'},
    503: {"description": 'cannot serve now: `{"status": "unavailable", "reason": ...}`'},
}
READY_DOCS: dict[int | str, dict[str, Any]] = {
    200: {"description": "a model (or the one asked for) can be served; per-model readiness"},
    404: {"description": "the model asked for is not served here", "model": OpenAIErrorBody},
    503: {"description": "draining, an engine is down, or nothing can be served"},
}
SERVABLE = ("ready", "not loaded")
"""Model states a request can be served in (a model not loaded loads on its request)."""
STARTING = ("loading",)
"""Not servable yet, and not down either."""


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:  # a test client's made-up host name
        return False


def metrics_refusal(request: Request, token: SecretStr | None) -> ApiError | None:
    """Why this client may not read /metrics, if it may not."""
    if token is None:
        if is_loopback(request.client.host if request.client else None):
            return None
        return ApiError(
            403,
            "/metrics answers only this machine; set DSDEPLOY_METRICS_TOKEN to read it "
            "from elsewhere",
            code="forbidden",
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), expected):
        return None
    return ApiError(401, "/metrics needs the metrics bearer token", code="unauthorized")


def readiness(pool: UpstreamPool, draining: bool) -> tuple[bool, dict[str, Any]]:
    """Ready when not draining, no loaded engine is down and some model is servable."""
    states = {str(row["model"]): str(row["state"]) for row in pool.status()}
    models = {name: {"ready": state in SERVABLE, "state": state} for name, state in states.items()}
    down = sorted(name for name, state in states.items() if state not in SERVABLE + STARTING)
    if draining:
        reason = "the gateway is shutting down"
    elif down:
        reason = f"the engine for {', '.join(down)} is down"
    elif not any(entry["ready"] for entry in models.values()):
        reason = "no model can be served yet"
    else:
        return True, {"status": "ready", "models": models}
    return False, {"status": "unavailable", "reason": reason, "models": models}


def ready_answer(request: Request, model: str | None) -> JSONResponse:
    draining = request.app.state.drain.draining
    ok, body = readiness(request.app.state.pool, draining)
    if model is not None:
        entry = body["models"].get(model)
        if entry is None:
            raise unknown_model(request.app.state.pool, model)
        ok = entry["ready"] and not draining
        body = {"status": "ready" if ok else "unavailable", "models": {model: entry}}
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics_answer(request: Request) -> Response:
    refusal = metrics_refusal(request, request.app.state.metrics_token)
    if refusal is not None:
        answer = error_response(OPENAI, refusal, request.state.ctx.id)
        if refusal.status == 401:
            answer.headers["www-authenticate"] = "Bearer"
        return answer
    gathered: GatewayMetrics = request.app.state.metrics
    await gathered.engines.refresh(request.app.state.proxy)
    return Response(generate_latest(gathered.registry), media_type=CONTENT_TYPE_LATEST)


def ops_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health", responses=HEALTH_DOCS)
    async def health(request: Request) -> JSONResponse:
        pool: UpstreamPool = request.app.state.pool
        ok, reason = pool.health()
        if not ok:
            body = {"status": "unavailable", "reason": client_safe(reason)}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "models": pool.model_names()})

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        """The process is up and its event loop answers."""
        return {"status": "live"}

    @router.get("/health/ready", responses=READY_DOCS)
    async def ready(request: Request, model: str | None = None) -> JSONResponse:
        """Whether to send traffic here: at once 503 while draining or with an engine
        down; ``?model=NAME`` asks about one model."""
        return ready_answer(request, model)

    @router.get("/ps")
    async def ps(request: Request) -> dict[str, Any]:
        """Each model's state, memory planned and measured, slots, requests in flight,
        idle seconds, restarts and how long the last restart took to be ready again."""
        pool: UpstreamPool = request.app.state.pool
        return {"models": pool.status()}

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus text; its own bearer token, or loopback only without one."""
        return await metrics_answer(request)

    return router
