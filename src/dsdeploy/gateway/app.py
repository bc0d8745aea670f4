"""The gateway's FastAPI app: OpenAI routes in front of one upstream engine."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from dsdeploy import __version__
from dsdeploy.gateway.errors import ApiError, install_error_handlers
from dsdeploy.gateway.proxy import EngineProxy, new_engine_client
from dsdeploy.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelRequest,
    SamplingRequest,
    parse_request,
)
from dsdeploy.gateway.upstream import Upstream

router = APIRouter()


def create_app(upstream: Upstream) -> FastAPI:
    """The app owns the upstream's life: started before the first request, stopped at exit."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upstream.start()
        try:
            async with new_engine_client(upstream.socket_path) as client:
                app.state.proxy = EngineProxy(upstream, client)
                yield
        finally:
            await upstream.stop()

    app = FastAPI(
        title="dsdeploy", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.upstream = upstream
    app.state.created = int(time.time())
    install_error_handlers(app)
    app.include_router(router)
    return app


def model_card(request: Request) -> dict[str, Any]:
    upstream: Upstream = request.app.state.upstream
    return {
        "id": upstream.model_name,
        "object": "model",
        "created": request.app.state.created,
        "owned_by": "dsdeploy",
    }


def check_model(upstream: Upstream, requested: str) -> None:
    if requested != upstream.model_name:
        raise ApiError(
            404,
            f"the model {requested!r} does not exist; this server has {upstream.model_name!r}",
            code="model_not_found",
            param="model",
        )


async def forward(
    request: Request, schema: type[ModelRequest], path: str, allowed: bool, prompt_param: str
) -> Response:
    """Check the body, the model and the endpoint, then hand the original bytes to the engine."""
    upstream: Upstream = request.app.state.upstream
    body = await request.body()
    parsed = parse_request(schema, body)
    check_model(upstream, parsed.model)
    if not allowed:
        raise ApiError(
            400,
            f"the model {upstream.model_name!r} does not serve {path}",
            code="unsupported_endpoint",
        )
    stream = isinstance(parsed, SamplingRequest) and parsed.stream
    proxy: EngineProxy = request.app.state.proxy
    return await proxy.forward(path, body, stream=stream, prompt_param=prompt_param)


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    upstream: Upstream = request.app.state.upstream
    if not upstream.ready:
        reason = upstream.unavailable_reason()
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ok", "model": upstream.model_name})


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(request)]}


@router.get("/v1/models/{model_id}")
async def get_model(request: Request, model_id: str) -> dict[str, Any]:
    check_model(request.app.state.upstream, model_id)
    return model_card(request)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    allowed = request.app.state.upstream.capabilities.chat
    return await forward(
        request, ChatCompletionRequest, "/v1/chat/completions", allowed, "messages"
    )


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    allowed = request.app.state.upstream.capabilities.completions
    return await forward(request, CompletionRequest, "/v1/completions", allowed, "prompt")


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    allowed = request.app.state.upstream.capabilities.embeddings
    return await forward(request, EmbeddingRequest, "/v1/embeddings", allowed, "input")
