"""Operations routes, apart from the APIs: whether the gateway can serve, and what each
model's engine is doing (``dsdeploy ps``). They take no body and lease no engine."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from dsdeploy.gateway.errors import client_safe
from dsdeploy.gateway.upstream import UpstreamPool

HEALTH_DOCS: dict[int | str, dict[str, Any]] = {
    200: {"description": 'serving: `{"status": "ok", "models": [...]}`'},
    503: {"description": 'cannot serve now: `{"status": "unavailable", "reason": ...}`'},
}


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

    @router.get("/ps")
    async def ps(request: Request) -> dict[str, Any]:
        """Each model's state, memory planned and measured, slots, requests in flight,
        idle seconds and restarts."""
        pool: UpstreamPool = request.app.state.pool
        return {"models": pool.status()}

    return router
