"""The stages every API request goes through, in order:

1. context    a ``RequestContext`` (id, returned as ``x-request-id``; timings) — middleware
2. admission  ``admit`` hooks, then the body read under the size cap (413) and the
              time limit (408)
3. validation the endpoint's pydantic model (400 naming the field); ``before`` hooks
4. routing    lease the engine of the body's ``model`` (404, 503), check that it serves
              this endpoint and the choices asked for (400)
5. relay      the client's bytes (or what ``forward`` hooks make of them) to the engine;
              its answer back, as bytes or, when a hook reads them, through ``on_event``
              or ``on_answer`` hooks; a client that leaves cancels the engine's work, and
              so does a stop's drain that runs out (503, or an error event ending a stream)
6. after      ``after`` hooks, once the answer is over, whatever the outcome — middleware

Headers hooks put in ``ctx.headers`` go out with the answer, streamed ones included.

Errors raised at any stage are ``ApiError`` values, answered in the endpoint's API shape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dsdeploy.engines.base import EngineCapabilities
from dsdeploy.errors import EngineUnavailable, ModelNotFound
from dsdeploy.gateway.admission import ClientGone, read_body, unless_client_leaves
from dsdeploy.gateway.context import RequestContext, current_request
from dsdeploy.gateway.drain import Drain, shutting_down
from dsdeploy.gateway.errors import ApiError, ErrorShape, client_safe, clip
from dsdeploy.gateway.hooks import Hooks
from dsdeploy.gateway.proxy import EngineProxy
from dsdeploy.gateway.relay import LeasedStream, relay
from dsdeploy.gateway.schemas import ModelRequest, StreamableRequest, parse_request
from dsdeploy.gateway.upstream import Upstream, UpstreamPool

CLIENT_CLOSED_REQUEST = 499
"""Noted on the context (for hooks and logs) when the client left before its answer."""


@dataclass(frozen=True)
class Endpoint:
    """One API route of the pipeline: what it checks, where it goes, how it fails."""

    name: str
    """Stable name for hooks, logs and metrics, e.g. ``chat.completions``."""
    engine_path: str
    schema: type[ModelRequest]
    serves: Callable[[EngineCapabilities], bool]
    shape: ErrorShape
    prompt_param: str | None = None
    """The field to name when the prompt does not fit the context."""


def unknown_model(pool: UpstreamPool, requested: str) -> ApiError:
    return ApiError(
        404,
        f"the model {clip(requested)!r} does not exist; this server has "
        f"{', '.join(pool.model_names())}",
        code="model_not_found",
        param="model",
    )


async def lease(pool: UpstreamPool, model: str, stack: AsyncExitStack) -> Upstream:
    """The model's upstream, held until ``stack`` closes (after the last byte is sent)."""
    try:
        return await stack.enter_async_context(pool.lease(model))
    except ModelNotFound:
        raise unknown_model(pool, model) from None
    except EngineUnavailable as exc:
        raise ApiError(503, client_safe(str(exc)), code="engine_unavailable") from None


def check_served(endpoint: Endpoint, body: ModelRequest, capabilities: EngineCapabilities) -> None:
    if not endpoint.serves(capabilities):
        raise ApiError(
            400,
            f"the model {clip(body.model)!r} does not serve {endpoint.engine_path}",
            code="unsupported_endpoint",
        )
    if body.choices > capabilities.max_choices:
        raise ApiError(
            400,
            f"n: the model {clip(body.model)!r} answers at most {capabilities.max_choices} "
            "choices per request",
            param="n",
        )


async def run(request: Request, endpoint: Endpoint) -> Response:
    ctx: RequestContext = request.state.ctx
    ctx.route = endpoint.name
    state = request.app.state
    hooks: Hooks = state.hooks
    if state.drain.draining:  # stopping: the requests in flight finish, no new one starts
        raise shutting_down()
    try:
        await hooks.admit(ctx, request.headers)
        body = await read_body(request, state.max_body_bytes, state.body_timeout_s)
        parsed = parse_request(endpoint.schema, body)
        ctx.model = parsed.model
        ctx.stream = isinstance(parsed, StreamableRequest) and parsed.stream
        await hooks.before(ctx, parsed)
        return await answer(request, endpoint, ctx, parsed, body)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)


async def answer(
    request: Request, endpoint: Endpoint, ctx: RequestContext, parsed: ModelRequest, body: bytes
) -> Response:
    """Lease the model's engine, hand it the client's bytes, relay what it answers."""
    state = request.app.state
    proxy: EngineProxy = state.proxy
    drain: Drain = state.drain
    hooks: Hooks = state.hooks
    prompt_param = endpoint.prompt_param or ""
    stack = AsyncExitStack()
    try:
        upstream = await lease(state.pool, parsed.model, stack)
        check_served(endpoint, parsed, upstream.capabilities)
        ctx.engine = upstream.capabilities
        body = await hooks.forward(ctx, parsed, body)
        ctx.timings.upstream_start = time.monotonic()
        if ctx.stream:
            opened = proxy.open(upstream, endpoint.engine_path, body, prompt_param)
            response = await unless_client_leaves(request.receive, opened, drain.cutoff())
            events = relay(response, ctx, endpoint.shape, hooks)
            return LeasedStream(events, stack.aclose, drain.cutoff(), endpoint.shape, ctx.id)
        fetched = proxy.fetch(upstream, endpoint.engine_path, body, prompt_param)
        payload = await unless_client_leaves(request.receive, fetched, drain.cutoff())
        ctx.timings.first_byte = time.monotonic()
        if hooks:
            payload = await through_answer_hooks(payload, ctx, hooks)
        await stack.aclose()
        return Response(payload, media_type="application/json")
    except BaseException:
        await stack.aclose()
        raise


async def through_answer_hooks(payload: bytes, ctx: RequestContext, hooks: Hooks) -> bytes:
    """A whole answer as the hooks that read it leave it; its usage is noted first."""
    try:
        answer = json.loads(payload)
    except ValueError:
        return payload
    ctx.record_usage(answer)
    readers = hooks.answer_readers(ctx)
    if not readers:
        return payload
    for hook in readers:
        answer = await hook.on_answer(ctx, answer)
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()


Finished = Callable[[RequestContext, Scope], Awaitable[None]]
"""Told of every HTTP request once its answer is over, whatever answered it (the audit, the
access log)."""


def added_headers(
    sent: list[tuple[bytes, bytes]], extra: dict[str, str]
) -> list[tuple[bytes, bytes]]:
    """``extra`` as ASGI headers, less those the answer has (a 429's own window)."""
    present = {name.lower() for name, _ in sent}
    added = ((name.encode(), value.encode()) for name, value in extra.items())
    return [(name, value) for name, value in added if name not in present]


class RequestContextMiddleware:
    """Gives every HTTP request its context (``current_request`` while it is handled) and
    ``x-request-id``, runs the ``after`` hooks of pipeline requests and of refused ones once
    the answer is over (sent, failed or abandoned), then tells each of ``finished`` of every
    request, unrouted ones included."""

    def __init__(self, app: ASGIApp, hooks: Hooks, finished: Sequence[Finished] = ()) -> None:
        self.app = app
        self.hooks = hooks
        self.finished = finished

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext()
        scope.setdefault("state", {})["ctx"] = ctx
        token = current_request.set(ctx)
        id_header = (b"x-request-id", ctx.id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx.status = message["status"]
                headers = [*message.get("headers", ()), id_header]
                if ctx.headers:
                    headers += added_headers(headers, ctx.headers)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            ctx.status = 500
            raise
        finally:
            ctx.timings.done = time.monotonic()
            refused = ctx.decision != "allowed"  # by the network guard or auth
            if (ctx.route is not None or refused) and self.hooks:
                await self.hooks.after(ctx)
            for finished in self.finished:
                await finished(ctx, scope)
            current_request.reset(token)
