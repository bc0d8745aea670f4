"""The OpenAI API (and llama.cpp's tokenize/detokenize, which answer errors the same way).

Each POST route is an ``Endpoint`` of the pipeline: the model that checks its body, the
engine path it goes to, and the capability an engine needs to serve it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from dsdeploy.gateway.auth import may_use, not_allowed
from dsdeploy.gateway.errors import OPENAI
from dsdeploy.gateway.openapi import add_endpoint
from dsdeploy.gateway.pipeline import Endpoint, unknown_model
from dsdeploy.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    ResponsesRequest,
    TokenizeRequest,
)
from dsdeploy.gateway.upstream import UpstreamPool

CHAT = Endpoint(
    name="chat.completions",
    engine_path="/v1/chat/completions",
    schema=ChatCompletionRequest,
    serves=lambda c: c.chat,
    shape=OPENAI,
    prompt_param="messages",
)
COMPLETIONS = Endpoint(
    name="completions",
    engine_path="/v1/completions",
    schema=CompletionRequest,
    serves=lambda c: c.completions,
    shape=OPENAI,
    prompt_param="prompt",
)
EMBEDDINGS = Endpoint(
    name="embeddings",
    engine_path="/v1/embeddings",
    schema=EmbeddingRequest,
    serves=lambda c: c.embeddings,
    shape=OPENAI,
    prompt_param="input",
)
RESPONSES = Endpoint(
    name="responses",
    engine_path="/v1/responses",
    schema=ResponsesRequest,
    serves=lambda c: c.responses,
    shape=OPENAI,
    prompt_param="input",
)
TOKENIZE = Endpoint(
    name="tokenize",
    engine_path="/tokenize",
    schema=TokenizeRequest,
    serves=lambda c: c.tokenize,
    shape=OPENAI,
)
DETOKENIZE = Endpoint(
    name="detokenize",
    engine_path="/detokenize",
    schema=DetokenizeRequest,
    serves=lambda c: c.tokenize,
    shape=OPENAI,
)


def model_card(request: Request, name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": request.app.state.created,
        "owned_by": "dsdeploy",
    }


def openai_router() -> APIRouter:
    router = APIRouter()
    add_endpoint(router, ["/v1/chat/completions"], CHAT)
    add_endpoint(router, ["/v1/completions"], COMPLETIONS)
    add_endpoint(router, ["/v1/embeddings"], EMBEDDINGS)
    add_endpoint(router, ["/v1/responses"], RESPONSES)
    add_endpoint(router, ["/tokenize", "/v1/tokenize"], TOKENIZE)
    add_endpoint(router, ["/detokenize", "/v1/detokenize"], DETOKENIZE)

    @router.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        """The models the request's API key may use."""
        pool: UpstreamPool = request.app.state.pool
        key = request.state.ctx.key
        names = [name for name in pool.model_names() if may_use(key, name)]
        return {"object": "list", "data": [model_card(request, name) for name in names]}

    @router.get("/v1/models/{model_id}")
    async def get_model(request: Request, model_id: str) -> dict[str, Any]:
        pool: UpstreamPool = request.app.state.pool
        if not may_use(request.state.ctx.key, model_id):
            raise not_allowed(request.state.ctx.key, model_id)
        if model_id not in pool.model_names():
            raise unknown_model(pool, model_id)
        return model_card(request, model_id)

    return router
