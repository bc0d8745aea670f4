"""The seams later features plug into: API keys, limits, audit, metrics, reasoning output.

A hook subclasses ``Hook`` and overrides only what it needs; it is registered on the app
(``app.state.hooks.add(hook)``, or ``create_app(..., hooks=[...])``) and runs for every
request of the pipeline's routes, in registration order:

- ``admit(ctx, headers)`` before the body is read: refuse early (keys, client address,
  rate limits) by raising ``ApiError``, so a refused client costs no body read.
- ``before(ctx, body)`` once the body is checked and ``ctx.model`` is known, before an
  engine is leased: refuse by raising ``ApiError`` (per-model limits, allowlists). The body
  is read-only here.
- ``forward(ctx, body, raw)`` once the engine is leased (``ctx.engine`` known): the bytes
  the engine receives, ``raw`` (the client's) unless the hook must change them.
- ``on_event(ctx, event)`` for each server-sent event of a streamed answer; return the
  event (changed or not) or None to drop it. Only a hook that overrides it, and whose
  ``reads_events_of(ctx)`` says yes for this request, makes the gateway parse events; with
  none the stream is relayed as raw bytes.
- ``on_answer(ctx, answer)`` for a whole (not streamed) answer's decoded JSON, under the
  same rule (``reads_events_of``); return it, changed or not.
- ``after(ctx, usage)`` once the answer is over, whatever the outcome (``ctx.status``,
  ``ctx.timings``); when any hook is registered, ``usage`` is known for plain answers and
  for streams that report it (read from their ends, or from every event when some hook
  reads events). Its failures are logged, never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers

from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.schemas import ModelRequest
from dsdeploy.gateway.sse import SseEvent

log = logging.getLogger("dsdeploy.gateway")


class Hook:
    """No-op at every stage; subclasses override the stages they need."""

    async def admit(self, ctx: RequestContext, headers: Headers) -> None:
        return None

    async def before(self, ctx: RequestContext, body: ModelRequest) -> None:
        return None

    async def forward(self, ctx: RequestContext, body: ModelRequest, raw: bytes) -> bytes:
        return raw

    def reads_events_of(self, ctx: RequestContext) -> bool:
        """Whether this request's answer goes through ``on_event``/``on_answer``: decoding
        costs CPU on every token, so a hook may say no for requests it leaves alone."""
        return True

    async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
        return event

    async def on_answer(self, ctx: RequestContext, answer: Any) -> Any:
        return answer

    async def after(self, ctx: RequestContext, usage: Usage | None) -> None:
        return None


def overrides(hook: Hook, stage: str) -> bool:
    return getattr(type(hook), stage) is not getattr(Hook, stage)


def reads_events(hook: Hook) -> bool:
    return overrides(hook, "on_event")


class Hooks:
    """The app's hooks, in order; knows whether any of them reads stream events."""

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self._all: list[Hook] = []
        self._event_readers: list[Hook] = []
        self._answer_readers: list[Hook] = []
        self._forwarders: list[Hook] = []
        for hook in hooks:
            self.add(hook)

    def add(self, hook: Hook) -> None:
        self._all.append(hook)
        if reads_events(hook):
            self._event_readers.append(hook)
        if overrides(hook, "on_answer"):
            self._answer_readers.append(hook)
        if overrides(hook, "forward"):
            self._forwarders.append(hook)

    def __bool__(self) -> bool:
        return bool(self._all)

    async def admit(self, ctx: RequestContext, headers: Headers) -> None:
        for hook in self._all:
            await hook.admit(ctx, headers)

    async def before(self, ctx: RequestContext, body: ModelRequest) -> None:
        for hook in self._all:
            await hook.before(ctx, body)

    def event_readers(self, ctx: RequestContext) -> list[Hook]:
        """The hooks that read this request's stream (asked once, when it starts)."""
        return [hook for hook in self._event_readers if hook.reads_events_of(ctx)]

    def answer_readers(self, ctx: RequestContext) -> list[Hook]:
        """The hooks that read this request's whole answer."""
        return [hook for hook in self._answer_readers if hook.reads_events_of(ctx)]

    async def forward(self, ctx: RequestContext, body: ModelRequest, raw: bytes) -> bytes:
        for hook in self._forwarders:
            raw = await hook.forward(ctx, body, raw)
        return raw

    async def after(self, ctx: RequestContext) -> None:
        for hook in self._all:
            try:
                await hook.after(ctx, ctx.usage)
            except Exception:
                log.exception("after-hook %s failed for request %s", type(hook).__name__, ctx.id)
