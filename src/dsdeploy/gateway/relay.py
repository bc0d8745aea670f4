"""Relaying a streamed answer from the engine to the client.

With no hook reading events the relay passes the engine's chunks on as they arrive,
looking at nothing (as fast as a relay can be); when any hook is registered it keeps the
stream's first chunk and its last few chunks, and reads the usage the answer reports from
them once it ends (the first and last events carry it). With a hook reading this request's
events, chunks are cut into server-sent events, each goes through those hooks, and what
they return is sent; the usage is noted on the request's context on the way.

However the stream ends — finished, broken by the engine, abandoned by the client, or cut
by a stop's drain (it then ends with one error event) — the engine connection is closed
(which cancels the request in the engine) and the lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

import aiohttp
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.drain import shutting_down
from dsdeploy.gateway.errors import ApiError, ErrorShape
from dsdeploy.gateway.hooks import Hook, Hooks
from dsdeploy.gateway.sse import SseEvent, SseParser, parse_block

log = logging.getLogger("dsdeploy.gateway")

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
ENGINE_STOPPED = ApiError(
    503, "the engine stopped while answering; retry the request", code="engine_unavailable"
)
HOOK_FAILED = ApiError(500, "internal error in the gateway; it has been logged")

TAIL_CHUNKS = 16
"""How many of a stream's last chunks the byte relay keeps to read its usage from: the
usage event is the last or next to last (llama-server writes one event per chunk)."""

Done = Callable[[], Awaitable[None]]
"""Called once the answer is over (its last byte sent, or it failed): ends the lease."""


def last_usage_event(part: bytes) -> SseEvent | None:
    """The last event in ``part`` that mentions usage, found without parsing the others;
    else the last with llama-server's ``timings``, which hold the counts when the client
    did not ask for usage (``stream_options.include_usage``)."""
    part = part.replace(b"\r\n", b"\n")
    at = part.rfind(b'"usage"')
    if at < 0:
        at = part.rfind(b'"timings"')
    if at < 0:
        return None
    start = part.rfind(b"\n\n", 0, at)
    end = part.find(b"\n\n", at)
    return parse_block(part[start + 2 if start >= 0 else 0 : end if end >= 0 else len(part)])


def record_usage_from(ctx: RequestContext, *parts: bytes) -> None:
    """Note the usage reported in ``parts`` (the stream's first chunk, then its end)."""
    for part in parts:
        if (event := last_usage_event(part)) is not None:
            ctx.record_usage(event.payload)


async def relay_bytes(
    response: aiohttp.ClientResponse, ctx: RequestContext, shape: ErrorShape, keep_usage: bool
) -> AsyncGenerator[bytes, None]:
    head = b""
    tail: deque[bytes] = deque(maxlen=TAIL_CHUNKS)
    try:
        async for chunk in response.content.iter_any():
            if ctx.timings.first_byte is None:
                ctx.timings.first_byte = time.monotonic()
                head = chunk if keep_usage else b""
            elif keep_usage:
                tail.append(chunk)
            yield chunk
        ctx.timings.last_byte = time.monotonic()
        record_usage_from(ctx, head, b"".join(tail))
    except aiohttp.ClientError as exc:
        log.warning("engine stream broke: %r", exc)
        yield shape.stream_event(ENGINE_STOPPED, ctx.id)
    finally:
        response.close()


async def through_hooks(events: list[SseEvent], ctx: RequestContext, hooks: list[Hook]) -> bytes:
    """What the hooks make of ``events``, encoded; the answer's usage is noted on the way."""
    sent = []
    for event in events:
        if '"usage"' in event.data:  # decode only the events that can carry it
            ctx.record_usage(event.payload)
        kept: SseEvent | None = event
        for hook in hooks:
            if kept is None:
                break
            kept = await hook.on_event(ctx, kept)
        if kept is not None:
            sent.append(kept.encode())
    return b"".join(sent)


async def relay_events(
    response: aiohttp.ClientResponse, ctx: RequestContext, shape: ErrorShape, hooks: list[Hook]
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
        ctx.timings.last_byte = time.monotonic()
    except aiohttp.ClientError as exc:
        log.warning("engine stream broke: %r", exc)
        yield shape.stream_event(ENGINE_STOPPED, ctx.id)
    except Exception:
        log.exception("an event hook failed for request %s", ctx.id)
        yield shape.stream_event(HOOK_FAILED, ctx.id)
    finally:
        response.close()


async def stopped(task: asyncio.Future[None]) -> None:
    """Cancel ``task`` and wait until it has stopped (nothing when it is over already)."""
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class LeasedStream(StreamingResponse):
    """A relayed event stream that ends its lease however it ends: finished, broken,
    abandoned by the client (Starlette then cancels it, and skips background tasks), or
    cut by the drain's ``cutoff``, which ends it with one error event in its API's shape."""

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        done: Done,
        cutoff: asyncio.Future[None],
        shape: ErrorShape,
        request_id: str,
    ) -> None:
        super().__init__(events, media_type="text/event-stream", headers=STREAM_HEADERS)
        self.events = events
        self.done = done
        self.cutoff = cutoff
        self.shape = shape
        self.request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent: list[Message] = []  # the first message and, once sent, the last

        async def send_noting(message: Message) -> None:
            if not sent or not message.get("more_body", False):
                sent.append(message)
            await send(message)

        streaming = asyncio.ensure_future(super().__call__(scope, receive, send_noting))
        try:
            await asyncio.wait((streaming, self.cutoff), return_when=asyncio.FIRST_COMPLETED)
            if streaming.done():
                streaming.result()  # a failure of the stream itself is the server's to log
            else:
                await stopped(streaming)
                await self.end_cut(send, started=bool(sent), ended=len(sent) > 1)
        finally:
            await stopped(streaming)  # this request was cancelled (uvicorn's own bound)
            await self.events.aclose()  # closes the engine connection now, not at GC
            await self.done()

    async def end_cut(self, send: Send, *, started: bool, ended: bool) -> None:
        if ended:
            return
        if not started:
            start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            await send(start)
        event = self.shape.stream_event(shutting_down(), self.request_id)
        await send({"type": "http.response.body", "body": event, "more_body": False})


def relay(
    response: aiohttp.ClientResponse, ctx: RequestContext, shape: ErrorShape, hooks: Hooks
) -> AsyncGenerator[bytes, None]:
    readers = hooks.event_readers(ctx)
    if readers:
        return relay_events(response, ctx, shape, readers)
    return relay_bytes(response, ctx, shape, keep_usage=bool(hooks))
