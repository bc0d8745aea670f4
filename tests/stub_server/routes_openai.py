"""OpenAI's chat and text completions and embeddings, and llama-server's (de)tokenizer."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.stub_server.generation import (
    Reply,
    check_context,
    generate,
    messages_tokens,
    new_id,
    open_stream,
    piece,
    plan_reply,
    prompt_tokens,
    reply_text,
    send_event,
    token_id,
    token_text,
    words,
)
from tests.stub_server.script import Script
from tests.stub_server.state import STUB

Body = dict[str, Any]
EMBEDDING_SIZE = 8
routes = web.RouteTableDef()


@dataclass(frozen=True)
class Flavour:
    """What differs between chat and text completions; the rest is one code path."""

    object: str
    chunk_object: str
    id_prefix: str
    prompt_tokens: Callable[[Body], int]
    choice: Callable[[int, str, str], Body]
    """A whole choice: index, text, finish reason."""
    delta: Callable[[int, str | None, str | None], Body]
    """A streamed choice: index, the token's text (None in the last), finish reason."""
    opening: Callable[[int], Body] | None = None
    """A first streamed choice before any token (chat's role)."""


CHAT = Flavour(
    object="chat.completion",
    chunk_object="chat.completion.chunk",
    id_prefix="chatcmpl-",
    prompt_tokens=lambda body: messages_tokens(body.get("messages")),
    choice=lambda i, text, finish: {
        "index": i,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish,
        "logprobs": None,
    },
    delta=lambda i, text, finish: {
        "index": i,
        "delta": {} if text is None else {"content": text},
        "finish_reason": finish,
        "logprobs": None,
    },
    opening=lambda i: {
        "index": i,
        "delta": {"role": "assistant", "content": None},
        "finish_reason": None,
    },
)
TEXT = Flavour(
    object="text_completion",
    chunk_object="text_completion",
    id_prefix="cmpl-",
    prompt_tokens=lambda body: prompt_tokens(body.get("prompt")),
    choice=lambda i, text, finish: {
        "index": i,
        "text": text,
        "finish_reason": finish,
        "logprobs": None,
    },
    delta=lambda i, text, finish: {
        "index": i,
        "text": text or "",
        "finish_reason": finish,
        "logprobs": None,
    },
)


def usage(reply: Reply, choices: int) -> Body:
    completion = reply.tokens * choices
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
    }


async def complete(request: web.Request, flavour: Flavour) -> web.StreamResponse:
    body: Body = await request.json()
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    script = Script.of(request.app[STUB].behaviour, body) if flavour is CHAT else None
    natural = script.tokens if script is not None else None
    reply = plan_reply(request, flavour.prompt_tokens(body), limit, natural)
    choices = int(body.get("n") or 1)
    head = {"id": new_id(flavour.id_prefix), "created": int(time.time())}
    head["model"] = body.get("model", "stub")
    calls = tool_calls(request, body) if flavour is CHAT else None
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await stream(request, flavour, head, reply, choices, include_usage, script, calls)
    text = await reply_text(request, reply)
    answers = [flavour.choice(i, text, reply.finish_reason) for i in range(choices)]
    if script is not None:
        for answer in answers:
            answer["message"] = {"role": "assistant", "content": ""} | script.message(
                0, reply.tokens
            )
    if calls is not None:
        for answer in answers:
            answer["message"]["tool_calls"], answer["finish_reason"] = calls
    return web.json_response(
        {**head, "object": flavour.object, "choices": answers, "usage": usage(reply, choices)}
    )


def tool_calls(request: web.Request, body: Body) -> tuple[list[Body], str] | None:
    """The calls and finish reason ``--tool-calls`` gives a request that offers tools."""
    kind = request.app[STUB].behaviour.tool_calls
    tools = body.get("tools")
    if kind is None or not tools:
        return None
    if kind == "empty":
        return [], "tool_calls"
    name = tools[0]["function"]["name"]
    call = {"index": 0, "id": "call_stub", "type": "function"}
    return [call | {"function": {"name": name, "arguments": "{}"}}], "stop"


async def stream(
    request: web.Request,
    flavour: Flavour,
    head: Body,
    reply: Reply,
    choices: int,
    with_usage: bool,
    script: Script | None,
    calls: tuple[list[Body], str] | None = None,
) -> web.StreamResponse:
    """One chunk per choice per token, then each choice's finish (with ``calls``, the tool
    calls and their finish reason), usage if asked, [DONE]."""
    response = await open_stream(request)
    chunk = {**head, "object": flavour.chunk_object}
    if flavour.opening is not None:
        for i in range(choices):
            await send_event(response, {**chunk, "choices": [flavour.opening(i)]})
    async for index in generate(request, reply):
        for i in range(choices):
            delta = flavour.delta(i, piece(index), None)
            if script is not None:
                delta["delta"] = script.message(index, index + 1)
                if not delta["delta"]:
                    continue  # a token that was all tag: a parser has nothing to send
            await send_event(response, {**chunk, "choices": [delta]})
    for i in range(choices):
        finish = flavour.delta(i, None, reply.finish_reason)
        if calls is not None:
            finish["delta"]["tool_calls"], finish["finish_reason"] = calls
        await send_event(response, {**chunk, "choices": [finish]})
    if with_usage:
        await send_event(response, {**chunk, "choices": [], "usage": usage(reply, choices)})
    await response.write(b"data: [DONE]\n\n")
    return response


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await complete(request, CHAT)


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    return await complete(request, TEXT)


def embedding(item: object) -> list[float]:
    """A unit vector that depends only on the input."""
    digest = hashlib.sha256(json.dumps(item).encode()).digest()[:EMBEDDING_SIZE]
    raw = [byte - 127.5 for byte in digest]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    body: Body = await request.json()
    given = body.get("input")
    one = not isinstance(given, list) or (bool(given) and isinstance(given[0], int))
    items = [given] if one else list(given)
    counts = [prompt_tokens(item) for item in items]
    for count in counts:
        check_context(request, count)
    data = [
        {"object": "embedding", "index": i, "embedding": embedding(item)}
        for i, item in enumerate(items)
    ]
    total = sum(counts)
    return web.json_response(
        {
            "object": "list",
            "model": body.get("model", "stub"),
            "data": data,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }
    )


@routes.post("/tokenize")
async def tokenize(request: web.Request) -> web.Response:
    body: Body = await request.json()
    text = words(str(body.get("content", "")))
    if body.get("with_pieces"):
        return web.json_response({"tokens": [{"id": token_id(w), "piece": w} for w in text]})
    return web.json_response({"tokens": [token_id(w) for w in text]})


@routes.post("/detokenize")
async def detokenize(request: web.Request) -> web.Response:
    body: Body = await request.json()
    text = " ".join(token_text(token) for token in body.get("tokens", []))
    return web.json_response({"content": text})
