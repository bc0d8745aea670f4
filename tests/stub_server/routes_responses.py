"""OpenAI's Responses API (``/v1/responses``): one message of output text, plain or as
the stream of typed events the official SDK reads."""

from __future__ import annotations

import itertools
import time
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
    given = body.get("input")
    tokens = len(words(given)) if isinstance(given, str) else messages_tokens(given)
    return tokens + len(words(content_text(body.get("instructions"))))


def output_text(text: str) -> Body:
    return {"type": "output_text", "text": text, "annotations": []}


def message(item_id: str, text: str | None) -> Body:
    """The output message; None while no text has come (its ``output_item.added`` form)."""
    return {
        "type": "message",
        "id": item_id,
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [output_text(text)],
    }


def response_object(head: Body, reply: Reply, output: list[Body] | None) -> Body:
    """The response as a whole; ``output`` None while it is still being generated."""
    finished = output is not None
    status = "in_progress" if not finished else "incomplete" if reply.truncated else "completed"
    incomplete = {"reason": "max_output_tokens"} if finished and reply.truncated else None
    tokens = reply.tokens if finished else 0
    return {
        **head,
        "object": "response",
        "status": status,
        "incomplete_details": incomplete,
        "output": output or [],
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "output_tokens": tokens,
            "total_tokens": reply.prompt_tokens + tokens,
        },
    }


@routes.post("/v1/responses")
async def responses(request: web.Request) -> web.StreamResponse:
    body: Body = await request.json()
    reply = plan_reply(request, input_tokens(body), body.get("max_output_tokens"))
    head = {"id": new_id("resp_"), "created_at": int(time.time())}
    head["model"] = body.get("model", "stub")
    item_id = new_id("msg_")
    if body.get("stream"):
        return await stream(request, head, reply, item_id)
    text = await reply_text(request, reply)
    return web.json_response(response_object(head, reply, [message(item_id, text)]))


async def stream(
    request: web.Request, head: Body, reply: Reply, item_id: str
) -> web.StreamResponse:
    response = await open_stream(request)
    numbers = itertools.count()

    async def emit(kind: str, **data: object) -> None:
        await send_typed(response, kind, sequence_number=next(numbers), **data)

    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    await emit("response.created", response=response_object(head, reply, None))
    await emit("response.in_progress", response=response_object(head, reply, None))
    await emit("response.output_item.added", output_index=0, item=message(item_id, None))
    await emit("response.content_part.added", **where, part=output_text(""))
    text = ""
    async for index in generate(request, reply):
        text += piece(index)
        await emit("response.output_text.delta", **where, delta=piece(index))
    await emit("response.output_text.done", **where, text=text)
    await emit("response.content_part.done", **where, part=output_text(text))
    item = message(item_id, text)
    await emit("response.output_item.done", output_index=0, item=item)
    last = "response.incomplete" if reply.truncated else "response.completed"
    await emit(last, response=response_object(head, reply, [item]))
    return response
