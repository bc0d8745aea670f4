"""Tokens, prompts and replies, shared by every API the stub speaks.

One token per whitespace word. The reply is "tok0 tok1 …": ``tokN`` has id N, any other
word a stable id from its CRC, so the output of one request is valid input to the next and
``/detokenize`` turns generated ids back into the generated text.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from tests.stub_server.state import STUB

DEFAULT_TOKENS = 8
"""Tokens generated when a request sets no limit (then the reply ends as if by EOS)."""
SENT = web.RequestKey("sent", int)
"""How many tokens the request had generated: recorded when the client goes away."""
GENERATED = re.compile(r"tok(\d+)")


def words(text: str) -> list[str]:
    return text.split()


def token_id(word: str) -> int:
    generated = GENERATED.fullmatch(word)
    if generated is not None:
        return int(generated.group(1))
    return 1_000_000 + zlib.crc32(word.encode()) % 1_000_000


def token_text(token: int) -> str:
    return f"tok{token}"


def piece(index: int) -> str:
    """The text of the reply's ``index``-th token, with the space before it."""
    return token_text(index) if index == 0 else f" {token_text(index)}"


def content_text(content: object) -> str:
    """A message's text: a string, or the text of its parts (OpenAI and Anthropic shapes)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def prompt_tokens(prompt: object) -> int:
    """Tokens in a completion or embedding input: text, token ids, or lists of either."""
    if isinstance(prompt, str):
        return len(words(prompt))
    if isinstance(prompt, list):
        return sum(1 if isinstance(item, int) else prompt_tokens(item) for item in prompt)
    return 0


def messages_tokens(messages: object) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(len(words(content_text(m.get("content")))) for m in messages)


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    500: web.HTTPInternalServerError,
    503: web.HTTPServiceUnavailable,
}


def json_error(status: int, message: str, kind: str, **extra: object) -> web.HTTPException:
    """llama-server's error body: ``{"error": {"code", "message", "type", ...}}``."""
    body = {"error": {"code": status, "message": message, "type": kind, **extra}}
    return ERRORS[status](text=json.dumps(body), content_type="application/json")


@dataclass(frozen=True)
class Reply:
    """How long a reply is; ``truncated`` when a limit ended it rather than the model."""

    prompt_tokens: int
    tokens: int
    truncated: bool

    @property
    def finish_reason(self) -> str:
        return "length" if self.truncated else "stop"


def check_context(request: web.Request, prompt_tokens: int) -> int:
    """The context size, or llama-server's 400 for a prompt longer than it."""
    n_ctx = request.app[STUB].behaviour.ctx_size
    if prompt_tokens > n_ctx:
        raise json_error(
            400,
            f"request ({prompt_tokens} tokens) exceeds the available context size "
            f"({n_ctx} tokens), try increasing it",
            "exceed_context_size_error",
            n_prompt_tokens=prompt_tokens,
            n_ctx=n_ctx,
        )
    return n_ctx


def plan_reply(
    request: web.Request, prompt_tokens: int, max_tokens: object, natural: int | None = None
) -> Reply:
    """The reply's length: ``max_tokens`` if given, within what the context leaves; a
    scripted reply (``natural`` tokens long) ends there as if by EOS."""
    n_ctx = check_context(request, prompt_tokens)
    wanted = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
    default = natural or DEFAULT_TOKENS
    tokens = min(wanted or default, n_ctx - prompt_tokens)
    eos_after = request.app[STUB].behaviour.eos_after
    if natural is not None:
        eos_after = natural if eos_after is None else min(eos_after, natural)
    if eos_after is not None and eos_after <= tokens:
        return Reply(prompt_tokens, eos_after, truncated=False)
    return Reply(prompt_tokens, tokens, truncated=wanted is not None or tokens < default)


async def generate(request: web.Request, reply: Reply) -> AsyncIterator[int]:
    """Token indices at the stub's decode speed, counted on the request as they go."""
    delay = request.app[STUB].behaviour.token_delay_s
    for index in range(reply.tokens):
        if delay:
            await asyncio.sleep(delay)
        request[SENT] = index + 1
        yield index


async def reply_text(request: web.Request, reply: Reply) -> str:
    return "".join([piece(index) async for index in generate(request, reply)])


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return response


async def send_event(response: web.StreamResponse, data: object, event: str | None = None) -> None:
    """One server-sent event, named (``event:``) or not (OpenAI's completions)."""
    head = f"event: {event}\n" if event else ""
    await response.write(f"{head}data: {json.dumps(data)}\n\n".encode())


async def send_typed(sink: web.StreamResponse, kind: str, /, **data: object) -> None:
    """An event of the Responses and Anthropic APIs: named, with its name as ``type``."""
    await send_event(sink, {"type": kind, **data}, event=kind)
