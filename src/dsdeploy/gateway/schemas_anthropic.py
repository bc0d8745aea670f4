"""The Anthropic Messages API bodies the gateway checks: ``/v1/messages`` and
``/v1/messages/count_tokens``. Same rules as the OpenAI ones: strict types, extra fields
allowed, the client's bytes forwarded unchanged."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from dsdeploy.gateway.schemas import ModelRequest, StreamableRequest, Whole, WireModel

ContentBlocks = list[dict[str, Any]]


class AnthropicMessage(WireModel):
    role: Literal["user", "assistant"]
    content: str | ContentBlocks


class AnthropicPrompt(ModelRequest):
    """What both endpoints read: the conversation, the system prompt and the tools."""

    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | ContentBlocks | None = None
    tools: list[dict[str, Any]] | None = None


class MessagesRequest(AnthropicPrompt, StreamableRequest):
    max_tokens: Whole = Field(ge=1)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: Whole | None = Field(None, ge=0)
    stop_sequences: list[str] | None = Field(None, max_length=16)


class CountTokensRequest(AnthropicPrompt):
    pass
