"""The OpenAI chat completions the transformers engine answers: the subset the gateway
relays (messages, ``max_tokens``/``max_completion_tokens``, ``temperature``, ``seed``,
``stop``, ``stream`` with ``stream_options.include_usage``, ``chat_template_kwargs``),
streamed and not, with usage and ``finish_reason``.

The gateway validated the request already; what is checked here is what this engine needs.
Thinking stays in ``content`` as the model wrote it: the gateway cuts it out
(``gateway.reasoning``), as for any engine without its own parser.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from dsdeploy.engines.transformers_generation import Sampling

DEFAULT_MAX_TOKENS = 256
Decode = Callable[[list[int]], str]


class BadRequest(ValueError):
    """A request this engine cannot answer (HTTP 400, OpenAI's error shape)."""


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    sampling: Sampling
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    template_options: dict[str, Any] = field(default_factory=dict)


def number(body: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{name} must be a number")
    return kind(value)


def read_request(body: Any, max_tokens_limit: int) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    if (body.get("n") or 1) != 1:
        raise BadRequest("this engine answers one choice per request (n=1)")
    max_tokens = number(
        body, "max_completion_tokens", int, number(body, "max_tokens", int, DEFAULT_MAX_TOKENS)
    )
    if not 1 <= max_tokens <= max_tokens_limit:
        raise BadRequest(f"max_tokens must be between 1 and {max_tokens_limit}")
    temperature = number(body, "temperature", float, 1.0)
    if temperature < 0:
        raise BadRequest("temperature must not be negative")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    if not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop must be a string or a list of strings")
    options = body.get("chat_template_kwargs") or {}
    if not isinstance(options, dict):
        raise BadRequest("chat_template_kwargs must be an object")
    usage = (body.get("stream_options") or {}).get("include_usage") is True
    return ChatRequest(
        messages,
        Sampling(max_tokens, temperature, number(body, "seed", int, None)),
        stop,
        bool(body.get("stream")),
        usage,
        options,
    )


@dataclass
class Completion:
    """A request's answer as its tokens come: the text (up to a stop string), and why it
    ended. The text is decoded from all the tokens each time, so multi-byte characters cut
    between tokens come out whole."""

    decode: Decode
    eos: frozenset[int]
    stop: tuple[str, ...]
    max_tokens: int
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    stopped: bool = False
    """A stop string or the end-of-sequence token ended it."""

    def update(self, tokens: list[int]) -> None:
        self.tokens = tokens
        kept = tokens[:-1] if tokens and tokens[-1] in self.eos else tokens
        self.stopped = len(kept) < len(tokens)
        text = self.decode(kept)
        cuts = [at for at in (text.find(s) for s in self.stop) if at >= 0]
        if cuts:
            text, self.stopped = text[: min(cuts)], True
        self.text = text

    def sendable(self) -> str:
        """The text that can be sent now: not a character that may still change (an
        unfinished UTF-8 sequence) or begin a stop string."""
        if self.stopped:
            return self.text
        text = self.text.rstrip("\ufffd")
        hold = max((len(s) - 1 for s in self.stop), default=0)
        for size in range(min(hold, len(text)), 0, -1):
            if any(s.startswith(text[-size:]) for s in self.stop):
                return text[:-size]
        return text

    @property
    def finish_reason(self) -> str:
        return "length" if not self.stopped and len(self.tokens) >= self.max_tokens else "stop"

    def usage(self, prompt_tokens: int) -> dict[str, int]:
        done = len(self.tokens)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": done,
            "total_tokens": prompt_tokens + done,
        }


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def answer(alias: str, completion: Completion, prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": alias,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": completion.usage(prompt_tokens),
    }


async def stream_answer(
    alias: str,
    completion: Completion,
    prompt_tokens: int,
    include_usage: bool,
    tokens: AsyncGenerator[list[int], None],
) -> AsyncIterator[bytes]:
    """Server-sent events as OpenAI streams them: the role, content deltas, the finish
    reason, the usage (its own chunk when asked for, else on the last one, where the gateway
    reads it), then ``[DONE]``. A generation failure ends the stream with an error event."""
    head = {"id": completion_id(), "object": "chat.completion.chunk", "model": alias}

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        chunk = head | {
            "created": int(time.time()),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(chunk | extra).encode() + b"\n\n"

    yield event({"role": "assistant", "content": ""})
    sent = 0
    try:
        async for grown in tokens:
            completion.update(grown)
            text = completion.sendable()
            if len(text) > sent:
                yield event({"content": text[sent:]})
                sent = len(text)
            if completion.stopped:
                break
    except RuntimeError as exc:
        error = {"error": {"message": str(exc)[:500], "type": "server_error", "code": 500}}
        yield b"data: " + json.dumps(error).encode() + b"\n\n"
        return
    finally:
        await tokens.aclose()  # a client gone or a stop string: the request is cancelled
    if len(completion.text) > sent:
        yield event({"content": completion.text[sent:]})
    usage = completion.usage(prompt_tokens)
    if include_usage:
        yield event({}, completion.finish_reason)
        final = head | {"created": int(time.time()), "choices": [], "usage": usage}
        yield b"data: " + json.dumps(final).encode() + b"\n\n"
    else:
        yield event({}, completion.finish_reason, usage=usage)
    yield b"data: [DONE]\n\n"
