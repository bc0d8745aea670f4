"""Relaying a streamed answer from the engine to the client.

With no hook reading events the relay passes the engine's chunks on as they arrive, as
fast as a relay can be; when some hook wants the answer's usage, it looks only at the first
chunk and at the last few kilobytes, where the APIs report it (Anthropic's input tokens in
``message_start``, everyone's totals in the last events), so no event is parsed on the way.
With a hook reading events, chunks are cut into server-sent events, each goes through the
hooks, and what they return is sent; the usage is noted on the way.

However the stream ends — finished, broken by the engine, or abandoned by the client — the
engine connection is closed (which cancels the request in the engine) and the lease ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

import aiohttp
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.errors import ApiError, ErrorShape
from dsdeploy.gateway.hooks import Hooks
from dsdeploy.gateway.sse import SseEvent, SseParser

log = logging.getLogger("dsdeploy.gateway")

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
ENGINE_STOPPED = ApiError(
    503, "the engine stopped while answering; retry the request", code="engine_unavailable"
)
HOOK_FAILED = ApiError(500, "internal error in the gateway; it has been logged")

Done = Callable[[], Awaitable[None]]
"""Called once the answer is over (its last byte sent, or it failed): ends the lease."""


TAIL_BYTES = 16 * 1024
"""How much of a stream's end is kept to find its usage: the last events with room to
spare (a final chunk with usage and llama-server's timings is about 1 KB)."""


def note_usage(ctx: RequestContext, data: bytes) -> None:
    """Record the usage of every whole event in ``data`` that reports one; a piece cut at
    either end is not valid JSON and is skipped."""
    for piece in data.split(b"\n\n"):
        if b'"usage"' not in piece and b'"timings"' not in piece:
            continue
        for line in piece.split(b"\n"):
            if line.startswith(b"data:"):
                with contextlib.suppress(ValueError):
                    ctx.record_usage(json.loads(line[5:]))


async def relay_bytes(
    response: aiohttp.ClientResponse, ctx: RequestContext, shape: ErrorShape, usage: bool
) -> AsyncGenerator[bytes, None]:
    tail = b""
    try:
        async for chunk in response.content.iter_any():
            if ctx.timings.first_byte is None:
                ctx.timings.first_byte = time.monotonic()
                if usage:
                    note_usage(ctx, chunk)
            elif usage:
                tail = tail[-TAIL_BYTES:] + chunk
            yield chunk
        if tail:
            note_usage(ctx, tail)
    except aiohttp.ClientError as exc:
        log.warning("engine stream broke: %r", exc)
        yield shape.stream_event(ENGINE_STOPPED, ctx.id)
    finally:
        response.close()


async def through_hooks(events: list[SseEvent], ctx: RequestContext, hooks: Hooks) -> bytes:
    """What the hooks make of ``events``, encoded; the answer's usage is noted on the way."""
    sent = []
    for event in events:
        if '"usage"' in event.data:  # decode only the events that can carry it
            ctx.record_usage(event.payload)
        kept = await hooks.on_event(ctx, event)
        if kept is not None:
            sent.append(kept.encode())
    return b"".join(sent)


async def relay_events(
    response: aiohttp.ClientResponse, ctx: RequestContext, shape: ErrorShape, hooks: Hooks
) -> AsyncGenerator[bytes, None]:
    parser = SseParser()
    try:
        async for chunk in response.content.iter_any():
            if ctx.timings.first_byte is None:
                ctx.timings.first_byte = time.monotonic()
            if out := await through_hooks(parser.feed(chunk), ctx, hooks):
                yield out
        last = parser.rest()
        if last is not None and (out := await through_hooks([last], ctx, hooks)):
            yield out
    except aiohttp.ClientError as exc:
        log.warning("engine stream broke: %r", exc)
        yield shape.stream_event(ENGINE_STOPPED, ctx.id)
    except Exception:
        log.exception("an event hook failed for request %s", ctx.id)
        yield shape.stream_event(HOOK_FAILED, ctx.id)
    finally:
        response.close()


class LeasedStream(StreamingResponse):
    """A relayed event stream that ends its lease however it ends: finished, broken, or
    abandoned by the client (Starlette then cancels it, and skips background tasks)."""

    def __init__(self, events: AsyncGenerator[bytes, None], done: Done) -> None:
        super().__init__(events, media_type="text/event-stream", headers=STREAM_HEADERS)
        self.events = events
        self.done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.events.aclose()  # closes the engine connection now, not at GC
            await self.done()


def relay(
    response: aiohttp.ClientResponse, ctx: RequestContext, shape: ErrorShape, hooks: Hooks
) -> AsyncGenerator[bytes, None]:
    if hooks.read_events:
        return relay_events(response, ctx, shape, hooks)
    return relay_bytes(response, ctx, shape, usage=bool(hooks))
