"""vLLM's HTTP answers, as its OpenAI server gives them (shapes from vLLM's
``entrypoints/openai`` protocol models): text is "tok0 tok1 …", one word per token.

Errors come in vLLM's shapes, chosen by the request:
- a prompt plus ``max_tokens`` longer than ``--max-model-len``: vLLM's context-length 400;
- a message ``standin:legacy-error``: the older ``{"object": "error", …}`` body;
- a message ``standin:fastapi-422``: FastAPI's own ``{"detail": [...]}`` 422;
- a message ``standin:server-error``: a 500 ``InternalServerError``.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from aiohttp import web

OPTIONS = web.AppKey("options", argparse.Namespace)
RUNNING = web.AppKey("running", list)
routes = web.RouteTableDef()


def error(status: int, message: str, kind: str = "BadRequestError") -> web.Response:
    """vLLM's current error envelope; ``code`` is the HTTP status, as vLLM sets it."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status)


def served_name(options: argparse.Namespace) -> str:
    return str((options.served_model_name or [options.model])[0])


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)  # vLLM's health answers an empty 200


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    options = request.app[OPTIONS]
    card = {
        "id": served_name(options),
        "object": "model",
        "created": int(time.time()),
        "owned_by": "vllm",
        "root": options.model,
        "parent": None,
        "max_model_len": options.max_model_len,
    }
    return web.json_response({"object": "list", "data": [card]})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """vLLM's Prometheus names (vllm/v1/metrics/loggers.py), labelled as vLLM labels them."""
    labels = f'{{engine="0",model_name="{served_name(request.app[OPTIONS])}"}}'
    lines = []
    for name, kind, value in (
        ("num_requests_running", "gauge", len(request.app[RUNNING])),
        ("num_requests_waiting", "gauge", 0),
        ("kv_cache_usage_perc", "gauge", 0.25),
        ("prompt_tokens_total", "counter", 12),
    ):
        lines += [f"# HELP vllm:{name} {name}", f"# TYPE vllm:{name} {kind}"]
        lines.append(f"vllm:{name}{labels} {value}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def words_of(body: dict[str, Any]) -> tuple[list[str], str]:
    """The prompt's words (the stand-in's tokens) and its whole text."""
    if "messages" in body:
        text = " ".join(str(m.get("content", "")) for m in body["messages"])
    else:
        text = str(body.get("prompt", ""))
    return text.split(), text


def refusal(body: dict[str, Any], options: argparse.Namespace) -> web.Response | None:
    """The error vLLM would answer this request with, if any."""
    words, text = words_of(body)
    if "standin:legacy-error" in text:
        legacy = {
            "object": "error",
            "message": "legacy shape: temperature must be non-negative",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
        return web.json_response(legacy, status=400)
    if "standin:fastapi-422" in text:
        detail = [
            {
                "type": "string_type",
                "loc": ["body", "messages", 0, "content"],
                "msg": "Input should be a valid string",
                "input": text,
            }
        ]
        return web.json_response({"detail": detail}, status=422)
    if "standin:server-error" in text:
        return error(500, "EngineCore encountered an issue", "InternalServerError")
    wanted = int(body.get("max_tokens") or 16)
    if len(words) + wanted > options.max_model_len:
        return error(
            400,
            f"This model's maximum context length is {options.max_model_len} tokens. However, "
            f"you requested {len(words) + wanted} tokens ({len(words)} in the messages, "
            f"{wanted} in the completion). Please reduce the length of the messages or "
            "completion.",
        )
    return None


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def generate(request: web.Request, chat: bool) -> web.StreamResponse:
    options = request.app[OPTIONS]
    body = await request.json()
    refused = refusal(body, options)
    if refused is not None:
        return refused
    words, _ = words_of(body)
    count = int(body.get("max_tokens") or 16)
    tokens = [f"tok{i}" + (" " if i < count - 1 else "") for i in range(count)]
    prefix = "chatcmpl" if chat else "cmpl"
    common = {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": served_name(options),
    }
    request.app[RUNNING].append(common["id"])
    try:
        if body.get("stream"):
            return await stream(request, body, common, tokens, len(words), chat)
        text = "".join(tokens)
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text, "tool_calls": []}
            kind = "chat.completion"
        else:
            choice["text"] = text
            kind = "text_completion"
        answer = common | {"object": kind, "choices": [choice], "usage": usage(len(words), count)}
        return web.json_response(answer)
    finally:
        request.app[RUNNING].remove(common["id"])


async def stream(
    request: web.Request,
    body: dict[str, Any],
    common: dict[str, Any],
    tokens: list[str],
    prompt_tokens: int,
    chat: bool,
) -> web.StreamResponse:
    """Server-sent events as vLLM sends them: a role chunk first (chat), one chunk per token,
    the finish reason, a usage chunk with no choices when asked, then ``[DONE]``."""
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    kind = "chat.completion.chunk" if chat else "text_completion"

    async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
        chunk = common | {"object": kind, "choices": choices} | extra
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    def choice(text: str, finish: str | None = None) -> dict[str, Any]:
        delta = {"delta": {"content": text}} if chat else {"text": text}
        return {"index": 0, "logprobs": None, "finish_reason": finish} | delta

    if chat:
        await send([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    for i, token in enumerate(tokens):
        await send([choice(token, "length" if i == len(tokens) - 1 else None)])
    if (body.get("stream_options") or {}).get("include_usage"):
        await send([], usage=usage(prompt_tokens, len(tokens)))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await generate(request, chat=True)


@routes.post("/v1/completions")
async def completions(request: web.Request) -> web.StreamResponse:
    return await generate(request, chat=False)


def create_app(options: argparse.Namespace) -> web.Application:
    app = web.Application()
    app[OPTIONS] = options
    app[RUNNING] = []
    app.add_routes(routes)
    return app
