"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``), plain and
as its stream of typed events, as llama-server speaks it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.stub_server.generation import (
    Reply,
    content_text,
    generate,
    messages_tokens,
    new_id,
    open_stream,
    piece,
    plan_reply,
    reply_text,
    send_typed,
    words,
)

Body = dict[str, Any]
routes = web.RouteTableDef()


def input_tokens(body: Body) -> int:
    return messages_tokens(body.get("messages")) + len(words(content_text(body.get("system"))))


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    body: Body = await request.json()
    reply = plan_reply(request, input_tokens(body), body.get("max_tokens"))
    head = {"id": new_id("msg_"), "type": "message", "role": "assistant"}
    head["model"] = body.get("model", "stub")
    if body.get("stream"):
        return await stream(request, head, reply)
    text = await reply_text(request, reply)
    return web.json_response(
        {
            **head,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason(reply),
            "stop_sequence": None,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.tokens},
        }
    )


def stop_reason(reply: Reply) -> str:
    return "max_tokens" if reply.truncated else "end_turn"


async def stream(request: web.Request, head: Body, reply: Reply) -> web.StreamResponse:
    response = await open_stream(request)
    start = {
        **head,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 0},
    }
    await send_typed(response, "message_start", message=start)
    block = {"type": "text", "text": ""}
    await send_typed(response, "content_block_start", index=0, content_block=block)
    async for index in generate(request, reply):
        delta = {"type": "text_delta", "text": piece(index)}
        await send_typed(response, "content_block_delta", index=0, delta=delta)
    await send_typed(response, "content_block_stop", index=0)
    await send_typed(
        response,
        "message_delta",
        delta={"stop_reason": stop_reason(reply), "stop_sequence": None},
        usage={"output_tokens": reply.tokens},
    )
    await send_typed(response, "message_stop")
    return response


@routes.post("/v1/messages/count_tokens")
async def count_tokens(request: web.Request) -> web.Response:
    return web.json_response({"input_tokens": input_tokens(await request.json())})
