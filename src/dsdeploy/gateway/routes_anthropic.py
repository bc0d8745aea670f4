"""The Anthropic Messages API: ``/v1/messages`` (plain and streamed) and
``/v1/messages/count_tokens``, answered by engines that speak it, errors in Anthropic's
shape (``errors.ANTHROPIC``; the app routes every path under ``PREFIX`` to it)."""

from __future__ import annotations

from fastapi import APIRouter

from dsdeploy.gateway.errors import ANTHROPIC
from dsdeploy.gateway.openapi import add_endpoint
from dsdeploy.gateway.pipeline import Endpoint
from dsdeploy.gateway.schemas_anthropic import CountTokensRequest, MessagesRequest

PREFIX = "/v1/messages"

MESSAGES = Endpoint(
    name="messages",
    engine_path="/v1/messages",
    schema=MessagesRequest,
    serves=lambda c: c.messages,
    shape=ANTHROPIC,
    prompt_param="messages",
)
COUNT_TOKENS = Endpoint(
    name="messages.count_tokens",
    engine_path="/v1/messages/count_tokens",
    schema=CountTokensRequest,
    serves=lambda c: c.messages,
    shape=ANTHROPIC,
    prompt_param="messages",
)


def anthropic_router() -> APIRouter:
    router = APIRouter()
    add_endpoint(router, [PREFIX], MESSAGES)
    add_endpoint(router, [f"{PREFIX}/count_tokens"], COUNT_TOKENS)
    return router
