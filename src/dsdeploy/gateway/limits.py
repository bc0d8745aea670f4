"""Limits as a pipeline hook: the gateway's queue bound and each key's requests per minute
and requests at once before the body is read, the request caps and its tokens per minute
once the body is checked, and everything given back once the answer is over.

A request over its key's limit is answered 429 in its API's shape, before any engine is
touched, with ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers; an admitted request's
answer carries the same headers for the limits its key has (the tokens' remaining count
includes this request's reservation); a gateway holding
``max_queued_requests`` answers 503 (Anthropic: 529 ``overloaded_error``): that is the
server's state, not the client's quota. Requests without a key (no keys configured) meet
only the caps and the queue bound.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

from starlette.datastructures import Headers

from dsdeploy.gateway.caps import check_caps, estimated_tokens, requested_output
from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.errors import ApiError
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.schemas import ModelRequest
from dsdeploy.security.keys import ApiKey
from dsdeploy.security.limits import (
    GatewayQueue,
    Limiter,
    LimitExceeded,
    LimitsUnavailable,
    Reservation,
    Window,
)
from dsdeploy.security.slots import Lease
from dsdeploy.settings import SecuritySettings


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``250ms``."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def window_headers(kind: str, window: Window) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{kind}": str(window.limit),
        f"x-ratelimit-remaining-{kind}": str(max(0, window.remaining)),
        f"x-ratelimit-reset-{kind}": duration(window.reset_s),
    }


@dataclass
class Held:
    """What one request holds until its ``after``."""

    queued: bool = False
    lease: Lease | None = None
    reservation: Reservation | None = None


class LimitsHook(Hook):
    """Runs after the hook that admits keys (it reads ``ctx.key``)."""

    def __init__(self, settings: SecuritySettings, limiter: Limiter | None = None) -> None:
        self.settings = settings
        self.limiter = limiter or Limiter.from_url(
            settings.redis_url, lease_s=settings.slot_lease_s
        )
        self.queue = GatewayQueue(settings.max_queued_requests)
        self.held: dict[str, Held] = {}

    async def aclose(self) -> None:
        await self.limiter.aclose()

    async def admit(self, ctx: RequestContext, headers: Headers) -> None:
        held = self.held[ctx.id] = Held()
        if not self.queue.try_enter():
            ctx.decision = "overloaded"
            message = "this server holds as many requests as it may; retry shortly"
            raise ApiError(503, message, code="overloaded", headers={"retry-after": "1"})
        held.queued = True
        key = ctx.key
        if not isinstance(key, ApiKey):
            return
        with refusals(ctx):
            if key.rpm is not None:
                window = await self.limiter.admit_request(key.id, key.rpm)
                ctx.headers |= window_headers("requests", window)
            if key.max_concurrent is not None:
                held.lease = await self.limiter.acquire_slot(key.id, key.max_concurrent)

    async def before(self, ctx: RequestContext, body: ModelRequest) -> None:
        check_caps(body, self.settings)
        key, held = ctx.key, self.held.get(ctx.id)
        if not isinstance(key, ApiKey) or key.tpm is None or held is None:
            return
        tokens = estimated_tokens(body, self.settings.max_output_tokens)
        if requested_output(body) is None:  # the cap is a guess: a minute's worth at most
            tokens = min(tokens, key.tpm)
        with refusals(ctx):
            reservation = await self.limiter.reserve_tokens(key.id, key.tpm, tokens)
            held.reservation = reservation
            ctx.headers |= window_headers("tokens", reservation.window)

    async def after(self, ctx: RequestContext, usage: Usage | None) -> None:
        held = self.held.pop(ctx.id, None)
        if held is None:
            return
        if held.queued:
            self.queue.leave()
        try:
            if held.lease is not None:
                await self.limiter.release_slot(held.lease)
        finally:
            if held.reservation is not None:
                used = spent(ctx, usage)
                if used is not None:
                    await self.limiter.settle(held.reservation, used)


@contextlib.contextmanager
def refusals(ctx: RequestContext) -> Iterator[None]:
    """The limiter's refusals as the API's answers."""
    try:
        yield
    except LimitExceeded as exc:
        ctx.decision = "rate_limited"
        raise too_many(exc) from None
    except LimitsUnavailable as exc:
        raise ApiError(503, str(exc), code="limits_unavailable") from None


def too_many(exc: LimitExceeded) -> ApiError:
    headers = {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
    if exc.window is not None:
        headers |= window_headers(exc.kind, exc.window)
    return ApiError(429, exc.message, code="rate_limit_exceeded", headers=headers)


def spent(ctx: RequestContext, usage: Usage | None) -> int | None:
    """Tokens a request used: none if no engine saw it, the engine's count when known,
    else unknown (the reservation stands: a stream whose usage no hook read)."""
    if ctx.timings.upstream_start is None:
        return 0
    if usage is not None:
        return usage.input_tokens + usage.output_tokens
    return None
