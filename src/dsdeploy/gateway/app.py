"""The gateway's FastAPI app: OpenAI routes in front of a pool of engines, one per model."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from dsdeploy import __version__
from dsdeploy.engines.base import EngineCapabilities
from dsdeploy.errors import EngineUnavailable, ModelNotFound
from dsdeploy.gateway.errors import ApiError, install_error_handlers
from dsdeploy.gateway.proxy import EngineProxy
from dsdeploy.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelRequest,
    SamplingRequest,
    parse_request,
)
from dsdeploy.gateway.upstream import Upstream, UpstreamPool

router = APIRouter()

MAX_ECHO = 100
"""Characters of client input an error message may repeat."""


def create_app(pool: UpstreamPool) -> FastAPI:
    """The app routes to the pool's engines; the pool's owner starts and stops them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with EngineProxy() as proxy:
            app.state.proxy = proxy
            yield

    app = FastAPI(
        title="dsdeploy", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.pool = pool
    app.state.created = int(time.time())
    install_error_handlers(app)
    app.include_router(router)
    return app


def model_card(request: Request, name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": request.app.state.created,
        "owned_by": "dsdeploy",
    }


def unknown_model(pool: UpstreamPool, requested: str) -> ApiError:
    shown = requested if len(requested) <= MAX_ECHO else requested[:MAX_ECHO] + "…"
    return ApiError(
        404,
        f"the model {shown!r} does not exist; this server has {', '.join(pool.model_names())}",
        code="model_not_found",
        param="model",
    )


async def lease(request: Request, model: str, stack: AsyncExitStack) -> Upstream:
    """The model's upstream, held until ``stack`` closes (after the last byte is sent)."""
    pool: UpstreamPool = request.app.state.pool
    try:
        return await stack.enter_async_context(pool.lease(model))
    except ModelNotFound:
        raise unknown_model(pool, model) from None
    except EngineUnavailable as exc:
        raise ApiError(503, str(exc), code="engine_unavailable") from None


async def forward(
    request: Request,
    schema: type[ModelRequest],
    path: str,
    allowed: Callable[[EngineCapabilities], bool],
    prompt_param: str,
) -> Response:
    """Check the body, lease the model's engine, then hand it the original bytes."""
    body = await request.body()
    parsed = parse_request(schema, body)
    stack = AsyncExitStack()
    try:
        upstream = await lease(request, parsed.model, stack)
        if not allowed(upstream.capabilities):
            raise ApiError(
                400,
                f"the model {parsed.model!r} does not serve {path}",
                code="unsupported_endpoint",
            )
        stream = isinstance(parsed, SamplingRequest) and parsed.stream
        proxy: EngineProxy = request.app.state.proxy
        return await proxy.forward(
            upstream, path, body, stream=stream, prompt_param=prompt_param, done=stack.aclose
        )
    except BaseException:
        await stack.aclose()
        raise


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    pool: UpstreamPool = request.app.state.pool
    ok, reason = pool.health()
    if not ok:
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ok", "models": pool.model_names()})


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    pool: UpstreamPool = request.app.state.pool
    return {"object": "list", "data": [model_card(request, name) for name in pool.model_names()]}


@router.get("/v1/models/{model_id}")
async def get_model(request: Request, model_id: str) -> dict[str, Any]:
    pool: UpstreamPool = request.app.state.pool
    if model_id not in pool.model_names():
        raise unknown_model(pool, model_id)
    return model_card(request, model_id)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await forward(
        request, ChatCompletionRequest, "/v1/chat/completions", lambda c: c.chat, "messages"
    )


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await forward(
        request, CompletionRequest, "/v1/completions", lambda c: c.completions, "prompt"
    )


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await forward(
        request, EmbeddingRequest, "/v1/embeddings", lambda c: c.embeddings, "input"
    )
