"""Bounds on what one request may ask for, checked before an engine is leased.

A request is refused (400, naming the field) rather than clamped: a client that asked for
100,000 tokens and silently got 4,096 would read a cut answer as the model's choice to stop.
Each API spells the same knob its own way, so every spelling is checked: ``max_tokens``
(chat, completions, Anthropic), ``max_completion_tokens`` (chat), ``max_output_tokens``
(Responses); ``stop`` (OpenAI) and ``stop_sequences`` (Anthropic); ``messages``, or the
Responses API's ``input`` items.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dsdeploy.gateway.errors import ApiError
from dsdeploy.gateway.schemas import ModelRequest
from dsdeploy.settings import SecuritySettings

OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
STOP_FIELDS = ("stop", "stop_sequences")
PROMPT_FIELDS = ("messages", "prompt", "input", "system", "instructions", "tools", "content")
CHARS_PER_TOKEN = 4
"""A prompt's tokens are estimated from its characters (about four per token in English;
the reservation is settled with the engine's own count once the answer is over)."""


def over(field: str, message: str) -> ApiError:
    return ApiError(400, f"{field}: {message}", param=field, code="over_server_limit")


def requested_output(body: ModelRequest) -> int | None:
    """The most tokens the request asks to generate per choice, in whichever spelling."""
    asked = [value for name in OUTPUT_FIELDS if isinstance(value := getattr(body, name, None), int)]
    return max(asked, default=None)


def stop_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def check_caps(body: ModelRequest, caps: SecuritySettings) -> None:
    """Raises the 400 for the first bound the request passes."""
    for name in OUTPUT_FIELDS:
        value = getattr(body, name, None)
        if isinstance(value, int) and value > caps.max_output_tokens:
            raise over(name, f"this server generates at most {caps.max_output_tokens} tokens")
    if body.choices > caps.max_choices:
        raise over("n", f"this server answers at most {caps.max_choices} choices per request")
    for name in STOP_FIELDS:
        stops = stop_strings(getattr(body, name, None))
        if len(stops) > caps.max_stop_sequences:
            raise over(name, f"this server takes at most {caps.max_stop_sequences} stop strings")
        if any(len(stop) > caps.max_stop_chars for stop in stops):
            raise over(name, f"stop strings may have at most {caps.max_stop_chars} characters")
    for name in ("messages", "input"):
        items = getattr(body, name, None)
        if isinstance(items, list) and len(items) > caps.max_messages:
            raise over(name, f"this server takes at most {caps.max_messages} messages")


def text_size(value: Any) -> int:
    """Characters of text in a JSON value; a token id counts as one token's characters."""
    if isinstance(value, BaseModel):  # a checked message
        value = value.model_dump()
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return sum(text_size(item) for item in value)
    is_token_id = isinstance(value, int) and not isinstance(value, bool)
    return CHARS_PER_TOKEN if is_token_id else 0


def generates(body: ModelRequest) -> bool:
    """Whether the endpoint generates tokens (not embeddings, tokenize, count_tokens)."""
    return any(name in type(body).model_fields for name in OUTPUT_FIELDS)


def estimated_tokens(body: ModelRequest, default_output: int) -> int:
    """What a request may cost at most, before the engine says: its prompt's estimate plus
    every choice's output limit (``default_output`` when it sets none)."""
    prompt = sum(text_size(getattr(body, name, None)) for name in PROMPT_FIELDS)
    output = (requested_output(body) or default_output) if generates(body) else 0
    return prompt // CHARS_PER_TOKEN + 1 + output * body.choices
